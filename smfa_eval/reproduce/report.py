"""Views of results.json: Table 1, Table 2 (ablation), the k-sweep (Fig. 4), understanding per
image type (Fig. 5), a forget/retain trade-off scatter, and the paper's claims checked one by
one. Nothing here computes a number that is not in the records."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..schema import TASKS
from .cells import ABBR, MEMORY, fmt, is_sweep, memory_fact, models_in, pm
from .preset import Preset
from .results import find, value

if TYPE_CHECKING:
    from .steps import Steps


def table1(records: list[dict], splits: tuple[str, ...], phrasing: str = "paraphrase") -> str:
    """Rows: models per split; columns: forget/retain x I-U, I-M, T-M x ROUGE-L (ceiling) / Fact / Meaningful."""
    cols = [f"{s} {ABBR[t]} {m}" for s in ("forget", "retain") for t in TASKS for m in ("R", "F", "M")]
    out = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for split in splits:
        out.append(f"| **{split}** |" + " |" * len(cols))
        for m in models_in(records, split):
            if m.startswith("smfa@"):
                continue  # the k-sweep has its own figure
            cells, seen = [], False
            for s in ("forget", "retain"):
                for t in TASKS:
                    q = dict(model=m, split=split, set=s, task=t, phrasing=phrasing)
                    r, c = find(records, metric="rougeL", **q), value(records, metric="rougeL_ceiling", **q)
                    seen = seen or r is not None
                    cells += [f"{pm(r, 3)} ({fmt(c)})" if r is not None else "-",
                              pm(find(records, metric="fact", **q)), pm(find(records, metric="meaningful", **q))]
            if seen:  # the oracle and attacked models are evaluated on paraphrases only: no empty rows
                out.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(out) + ("\n\nR = ROUGE-L F (in brackets: the ceiling, a perfect memoriser of the training "
                             "answers against these references); F = Fact, M = Meaningful (0-10, heuristic judge). "
                             "± = half the 95 % bootstrap interval over the cell's items.\n")


def table2(records: list[dict], split: str, phrasing: str = "paraphrase") -> str:
    """Markdown Table 2: Fact on `split` per mask rule (MFA, conflict only, magnitude only, SMFA)."""
    rows = [("mfa", "", ""), ("smfa:conflict", "✓", ""), ("smfa:magnitude", "", "✓"), ("smfa", "✓", "✓")]
    cols = [f"{s} {ABBR[t]} F" for s in ("forget", "retain") for t in TASKS]
    out = ["| model | conflict | magnitude | " + " | ".join(cols) + " |", "|---" * (len(cols) + 3) + "|"]
    for m, c, r in rows:
        cells = [fmt(value(records, model=m, split=split, set=s, task=t, phrasing=phrasing, metric="fact"))
                 for s in ("forget", "retain") for t in TASKS]
        out.append(f"| {m} | {c} | {r} | " + " | ".join(cells) + " |")
    return "\n".join(out) + f"\n\nFact (0-10) on {split}, {phrasing} questions.\n"


def claims(records: list[dict], preset: Preset, phrasing: str = "paraphrase") -> list[tuple[str, bool | None, str]]:
    """The issue's acceptance checks, each (claim, holds, the numbers)."""
    out: list[tuple[str, bool | None, str]] = []
    pr = preset.protocol

    def get(model, split, s, t, metric="fact"):
        return value(records, model=model, split=split, set=s, task=t, phrasing=phrasing, metric=metric)

    for split in pr.splits:
        for s in ("forget", "retain"):
            for t, floor in (("image_memory", 8.0), ("text_memory", 8.0), ("image_understanding", 7.0)):
                v = get("original", split, s, t)
                out.append((f"original {split} {s} {ABBR[t]} Fact >= {floor:g}", None if v is None else v >= floor,
                            fmt(v)))
        for metric in ("fact", "rougeL"):
            for t in MEMORY:
                o, m = get("original", split, "forget", t, metric), get("smfa", split, "forget", t, metric)
                out.append((f"smfa {split} forget {ABBR[t]} {metric} <= 0.5x original",
                            None if None in (o, m) else m <= 0.5 * o, f"{fmt(m, 3)} vs {fmt(o, 3)}"))
                o, m = get("original", split, "retain", t, metric), get("smfa", split, "retain", t, metric)
                out.append((f"smfa {split} retain {ABBR[t]} {metric} >= 0.9x original",
                            None if None in (o, m) else m >= 0.9 * o, f"{fmt(m, 3)} vs {fmt(o, 3)}"))
        o, m = get("original", split, "forget", "image_understanding"), get("smfa", split, "forget",
                                                                              "image_understanding")
        o2, m2 = get("original", split, "retain", "image_understanding"), get("smfa", split, "retain",
                                                                                "image_understanding")
        ok = None if None in (o, m, o2, m2) else (m >= 0.95 * o and m2 >= 0.95 * o2)
        out.append((f"smfa {split} understanding >= 0.95x original", ok, f"{fmt(m)}/{fmt(m2)} vs {fmt(o)}/{fmt(o2)}"))
        mfa_r, smfa_r = memory_fact(records, "mfa", split, "retain"), memory_fact(records, "smfa", split, "retain")
        mfa_u = [get("mfa", split, s, "image_understanding") for s in ("forget", "retain")]
        smfa_u = [get("smfa", split, s, "image_understanding") for s in ("forget", "retain")]
        ok = None
        if None not in (mfa_r, smfa_r, *mfa_u, *smfa_u):
            ok = mfa_r < smfa_r and sum(mfa_u) <= sum(smfa_u)  # type: ignore[operator,arg-type]
        out.append((f"mfa {split} loses more retain memory and understanding than smfa", ok,
                     f"retain {fmt(mfa_r)} vs {fmt(smfa_r)}; understanding {fmt(sum(mfa_u) / 2 if None not in mfa_u else None)}"
                     f" vs {fmt(sum(smfa_u) / 2 if None not in smfa_u else None)}"))
    split = pr.ablation_split
    smfa_f = memory_fact(records, "smfa", split, "forget")
    for m in ("smfa:conflict", "smfa:magnitude"):
        v = memory_fact(records, m, split, "forget")
        out.append((f"{m} {split} forgets less than smfa", None if None in (v, smfa_f) else v > smfa_f,
                    f"forget memory Fact {fmt(v)} vs {fmt(smfa_f)}"))
    pts = sorted((r["k"], memory_fact(records, r["model"], split, "forget")) for r in records
                 if r["split"] == split and is_sweep(r["model"]) and r["metric"] == "fact" and r["set"] == "forget"
                 and r["task"] == "image_memory" and r["phrasing"] == phrasing and r.get("image_type") is None)
    ys = [y for _, y in pts if y is not None]
    ok = None if len(ys) < 2 else all(b <= a + 0.25 for a, b in zip(ys, ys[1:]))
    out.append((f"{split} forget memory does not rise with k (tolerance 0.25)", ok,
                ", ".join(f"k={k:g}: {fmt(y)}" for k, y in pts)))
    return out


def claims_table(rows: list[tuple[str, bool | None, str]]) -> str:
    """Markdown table of the paper's claims: whether each holds (yes / **no** / n/a) and its numbers."""
    mark = {True: "yes", False: "**no**", None: "n/a"}
    return "\n".join(["| claim | holds | numbers |", "|---|---|---|"]
                     + [f"| {c} | {mark[ok]} | {n} |" for c, ok, n in rows]) + "\n"


def extra_sections(records: list[dict], splits: tuple[str, ...], seq_split: str, out: Path) -> list[str]:
    """Unseen-image utility (with any collapse named), the paired differences and, where the
    preset runs them, the sequential requests (table and figure)."""
    from ..sequential import sequential_figure, sequential_table
    from .uncertainty import paired_table
    from .utility import collapses, utility_table

    plain = [r for r in records if r.get("request") is None and r.get("vs") is None]
    md = ["## Utility on unseen images", "", utility_table(plain, splits)]
    md += [f"**{line}**" for line in collapses(plain, splits)] + ([""] if collapses(plain, splits) else [])
    for split in splits:
        for metric in ("rougeL", "fact"):
            md += [f"## Paired differences ({split}, {metric})", "", paired_table(records, split, metric)]
    if any(r.get("request") is not None for r in records):
        png = sequential_figure(records, seq_split, out / "sequential.png")
        md += [f"## Sequential forget requests ({seq_split})", "", sequential_table(records, seq_split),
               sequential_table(records, seq_split, "fact"), f"![{png.stem}]({png.name})", ""]
    return md


def write_report(out: Path, preset: Preset, seed: int, records: list[dict], steps: Steps) -> Path:
    """OUT/report.md (+ figures, run.json) from the records."""
    import sys

    from .figures import write_figures
    from .runinfo import dump_json, run_info

    pr = preset.protocol
    every = records  # paired differences and sequential points have views of their own
    records = [r for r in records if r.get("vs") is None and r.get("request") is None]
    figs = write_figures(records, pr.ablation_split, out)
    md = [f"# smfa reproduce: preset {preset.name}, seed {seed}", "",
          f"{preset.description}. Every number below is a record of `results.json`.", "",
          "## The paper's claims, checked", "", claims_table(claims(records, preset)),
          "## Table 1: paraphrased questions (never seen in training)", "", table1(records, pr.splits),
          "## Table 1, seen phrasing: the fine-tuning questions themselves", "",
          table1(records, pr.splits, "template"),
          f"## Table 2: ablation ({pr.ablation_split})", "", table2(records, pr.ablation_split),
          *extra_sections(every, pr.splits, pr.ablation_split, out)]
    from .privacy_view import privacy_markdown

    md += privacy_markdown(records, pr.splits, out)  # nothing unless [protocol] privacy = true
    md += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figs]
    info = run_info(preset, seed, sys.argv, steps)
    md += ["", "## Wall time per step (s)", "", "| step | s |", "|---|---|"]
    md += [f"| {k} | {v:.0f} |" for k, v in info["wall_s"].items()]
    md += ["", f"Total: {info['total_wall_s'] / 60:.1f} min on {info['machine']['cores']} cores "
           f"({info['machine']['system']}); torch {info['versions']['torch']}, "
           f"transformers {info['versions']['transformers']}."]
    dump_json(out / "run.json", info)
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path
