"""The reproduction report's privacy views, from results.json records only: a privacy table
per split, the robustness table (which methods survive which attack, `survives`) and the
figures (forget quality vs utility per split, robustness bars)."""

from __future__ import annotations

from pathlib import Path

from .cells import fmt
from .privacy_records import survives
from .results import value

ATTACKS = ("relearn", "int8", "int4", "perturb")
P = "paraphrase"


def _f(v: float | None, digits: int = 3) -> str:
    return fmt(v, digits)


def _mean(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def forget_memory(records: list[dict], model: str, split: str, metric: str, phrasing: str = P) -> float | None:
    """Mean `metric` over the forget set's image and text memory for one model (None if neither)."""
    return _mean([value(records, model=model, split=split, set="forget", task=t, phrasing=phrasing, metric=metric)
                  for t in ("image_memory", "text_memory")])


def _all(records: list[dict], model: str, split: str, s: str, metric: str) -> float | None:
    return value(records, model=model, split=split, set=s, task="all", phrasing=P, metric=metric)


def _models(records: list[dict], split: str) -> list[str]:
    seen: list[str] = []
    for r in records:
        if r["split"] == split and r["metric"] == "utility" and "+" not in r["model"] and r["model"] not in seen:
            seen.append(r["model"])
    return seen


def privacy_table(records: list[dict], split: str) -> str:
    """Markdown privacy table of `split`: forget MCQ, truth ratio, forget quality, MIAs, over-refusal, utility."""
    cols = ["forget MCQ↓", "forget TR→1", "forget quality↑", "MIA LOSS→.5", "MIA Zlib→.5", "MIA Min-K→.5",
            "MIA Min-K++→.5", "over-refusal↓", "utility↑"]
    out = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m in _models(records, split):
        cells = [_f(forget_memory(records, m, split, "mcq_acc")), _f(forget_memory(records, m, split, "truth_ratio")),
                 _f(_all(records, m, split, "forget", "forget_quality"), 4)]
        cells += [_f(_all(records, m, split, "forget", f"mia_auc_{s}")) for s in ("loss", "zlib", "mink", "minkpp")]
        cells += [_f(_all(records, m, split, "retain", "over_refusal")), _f(_all(records, m, split, "retain", "utility"))]
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def robustness_rows(records: list[dict], split: str) -> list[tuple[str, dict[str, tuple]]]:
    """[(method, {phase: (ROUGE-L, MCQ, survives or None)})] for methods with an attacked model."""
    attacked = sorted({r["model"].rpartition("+")[0] for r in records
                       if r["split"] == split and r["model"].rpartition("+")[2] in ATTACKS})
    original = forget_memory(records, "original", split, "rougeL")
    rows = []
    for m in attacked:
        before = forget_memory(records, m, split, "rougeL")
        by = {"before": (before, forget_memory(records, m, split, "mcq_acc"), None)}
        for a in ATTACKS:
            r = forget_memory(records, f"{m}+{a}", split, "rougeL")
            if r is None:
                continue
            # relearn is evaluated on the facts it did not train on: compare with the same facts before
            ref, orig = before, original
            if a == "relearn":
                held = forget_memory(records, m, split, "rougeL", "relearn_heldout")
                held_orig = forget_memory(records, "original", split, "rougeL", "relearn_heldout")
                if held is not None and held_orig is not None:
                    ref, orig = held, held_orig
                by["relearn_before"] = (ref, forget_memory(records, m, split, "mcq_acc", "relearn_heldout"), None)
            ok = survives(ref, r, orig) if ref is not None and orig is not None else None
            by[a] = (r, forget_memory(records, f"{m}+{a}", split, "mcq_acc"), ok)
        rows.append((m, by))
    return rows


def robustness_table(records: list[dict], split: str) -> str | None:
    """Markdown table of each method before and after every attack, with its legend; None if no attack ran."""
    rows = robustness_rows(records, split)
    if not rows:
        return None
    cols = (["before R", "before MCQ", "held-out before R"]
            + [f"{a} {x}" for a in ATTACKS for x in ("R", "MCQ", "survives")])
    out = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m, by in rows:
        cells = [_f(by["before"][0]), _f(by["before"][1]), _f(by.get("relearn_before", (None,))[0])]
        for a in ATTACKS:
            r, q, ok = by.get(a, (None, None, None))
            verdict = "-" if r is None else ("n/a" if ok is None else ("yes" if ok else "**no**"))
            cells += [_f(r), _f(q), verdict]
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return ("\n".join(out) + "\n\nForget memory ROUGE-L (R) and MCQ accuracy before and after each attack; a method "
            "survives an attack when it brings back less than half of the ROUGE-L that unlearning removed from "
            "the original. Relearn is evaluated on the forget facts it did not train on and compared with the "
            "method on those same facts (held-out before R). n/a: the method removed nothing (its forget ROUGE-L "
            "before the attack is at or above the original's), so there is nothing an attack could bring back.\n")


def privacy_figures(records: list[dict], splits: tuple[str, ...], out: Path) -> list[Path]:
    """Write forget quality vs utility and robustness PNGs per split into `out`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for split in splits:
        pts = [(m, _all(records, m, split, "forget", "forget_quality"), _all(records, m, split, "retain", "utility"))
               for m in _models(records, split)]
        # the k-sweep has its own figure; its points would only crowd the methods' labels
        pts = [(m, x, y) for m, x, y in pts if x is not None and y is not None and "@" not in m]
        if pts:
            fig, ax = plt.subplots(figsize=(6, 4.5))
            # labels stacked by utility, alternately left and right of their points, so that
            # methods with nearly equal coordinates stay readable
            for i, (m, x, y) in enumerate(sorted(pts, key=lambda p: p[2])):
                ax.scatter([max(x, 1e-12)], [y])
                ax.annotate(m, (max(x, 1e-12), y), fontsize=7, xytext=(6 if i % 2 == 0 else -6, 4 * (i % 3) - 4),
                            textcoords="offset points", ha="left" if i % 2 == 0 else "right")
            ref = _all(records, "oracle", split, "retain", "utility")
            if ref is not None:  # the oracle is forget quality's reference: its utility is the target
                ax.axhline(ref, ls="--", lw=0.8, color="grey", label="oracle's utility")
                ax.legend(fontsize=7, loc="lower right")
                lo, hi = ax.get_ylim()  # axhline does not widen the limits by itself
                pad = 0.05 * (hi - lo)
                ax.set_ylim(min(lo, ref - pad), max(hi, ref + pad))
            ax.set_xscale("log")
            ax.set_xlabel("forget quality (KS p vs oracle)")
            ax.set_ylabel("model utility")
            ax.set_title(f"Forget quality vs utility [{split}]")
            fig.tight_layout()
            written.append(out / f"forget_quality_vs_utility_{split}.png")
            fig.savefig(written[-1], dpi=120)
            plt.close(fig)
        rows = robustness_rows(records, split)
        if rows:
            fig, ax = plt.subplots(figsize=(7, 4))
            phases = ("before", *ATTACKS)
            width = 0.8 / len(phases)
            for j, ph in enumerate(phases):
                ax.bar([i + j * width for i in range(len(rows))], [by.get(ph, (0.0,))[0] or 0.0 for _, by in rows],
                       width, label=ph)
            ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))], [m for m, _ in rows], rotation=30,
                          fontsize=7)
            ax.set_ylabel("forget memory ROUGE-L")
            ax.set_title(f"Robustness [{split}]")
            ax.legend(fontsize=7)
            fig.tight_layout()
            written.append(out / f"robustness_{split}.png")
            fig.savefig(written[-1], dpi=120)
            plt.close(fig)
    return written


def privacy_markdown(records: list[dict], splits: tuple[str, ...], out: Path) -> list[str]:
    """The report's privacy sections (empty without privacy records)."""
    if not any(r["metric"] == "utility" for r in records):
        return []
    md = []
    for split in splits:
        md += [f"## Privacy ({split}): forget quality, membership inference, over-refusal, utility", "",
               privacy_table(records, split)]
        rob = robustness_table(records, split)
        if rob:
            md += [f"## Robustness ({split}): attacks that try to bring the memories back", "", rob]
    md += [f"![{p.stem}]({p.name})" for p in privacy_figures(records, splits, out)]
    return md + [""]
