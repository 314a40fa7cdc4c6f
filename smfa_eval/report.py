"""Tables in the paper's layout and comparison figures from run summaries (summary.json).

Table 1: rows = methods (grouped by split); columns = forget/retain x image understanding /
image memory / text memory x R (ROUGE-L F-measure), F (Fact), M (Meaningful).
Table 2 (ablation): rows = runs with their masking mode; columns = ROUGE-L F per set and task.
"""

from __future__ import annotations

import json
from pathlib import Path

from .plotting import save_figure
from .schema import TASKS

TASK_ABBR = {"image_understanding": "I-U", "image_memory": "I-M", "text_memory": "T-M"}
TASK_TITLE = {"image_understanding": "Image Understanding", "image_memory": "Image Memory", "text_memory": "Text Memory"}
# Higher is better except memory on the forget set.
ARROW = {("forget", "image_understanding"): "↑", ("forget", "image_memory"): "↓", ("forget", "text_memory"): "↓"}
MODE_FLAGS = {"both": ("✓", "✓"), "conflict": ("✓", ""), "magnitude": ("", "✓"), "none": ("-", "-")}


def load_summary(run: str | Path) -> dict:
    """A run's summary.json (given the run dir or the file); FileNotFoundError if its eval did not finish."""
    p = Path(run)
    p = p / "summary.json" if p.is_dir() else p
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no summary.json (did `smfa eval` finish?)")
    return json.loads(p.read_text())


def _fmt(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pm(g: dict, key: str, digits: int) -> str:
    """The mean as "0.62±0.04" (half its 95 % bootstrap interval) where the summary has one."""
    ci = (g.get("ci") or {}).get(key)
    if g.get(key) is None or not ci:
        return _fmt(g.get(key), digits)
    return f"{g[key]:.{digits}f}±{(ci[1] - ci[0]) / 2:.{digits}f}"


def _label(s: dict) -> str:
    r = s["run"]
    label = r.get("method") or "model"
    return f"{label} (k={r['k']:g})" if r.get("k") is not None else label


def table1(summaries: list[dict]) -> str:
    """Markdown Table 1: ROUGE-L, Fact and Meaningful (± CI) per method, set and task, grouped by split."""
    cols = [f"{st.title()} {TASK_ABBR[t]} {m}{ARROW.get((st, t), '↑') if m != 'M' else '↑'}"
            for st in ("forget", "retain") for t in TASKS for m in ("R", "F", "M")]
    lines = ["| Method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    by_split: dict[str, list[dict]] = {}
    for s in summaries:
        by_split.setdefault(s["run"]["split"], []).append(s)
    for split, group in by_split.items():
        lines.append(f"| **{split}** |" + " |" * len(cols))
        for s in group:
            cells = []
            for st in ("forget", "retain"):
                for t in TASKS:
                    g = s["groups"][f"{st}/{t}"]
                    cells += [_pm(g, "rougeL_f", 3), _pm(g, "fact", 2), _pm(g, "meaningful", 2)]
            lines.append(f"| {_label(s)} | " + " | ".join(cells) + " |")
    note = ("\nR = ROUGE-L F-measure (rouge-score, stemmer on); F = Fact Score, M = Meaningful Score (0-10, "
            f"judge: {', '.join(sorted({s['run']['judge'] for s in summaries}))}); ± = half the 95 % bootstrap "
            "interval over the cell's items.\n")
    failed = sum(s.get("judge_failed", 0) for s in summaries)
    if failed:
        note += f"\n**{failed} judgements failed** and are excluded from F/M means (see items.jsonl `judge_error`).\n"
    return "\n".join(lines) + "\n" + note


def unseen_table(summaries: list[dict]) -> str:
    """Utility on unseen images (general_eval.py): one row per run that has the set."""
    lines = ["| Method | R | F | M | over-refusal | n |", "|---|---|---|---|---|---|"]
    for s in summaries:
        g = s["groups"].get("unseen/general_understanding")
        if g and g["n"]:
            lines.append(f"| {_label(s)} [{s['run']['split']}] | {_pm(g, 'rougeL_f', 3)} | {_pm(g, 'fact', 2)} | "
                         f"{_pm(g, 'meaningful', 2)} | {_pm(g, 'refusal', 2)} | {g['n']} |")
    if len(lines) == 2:
        return "(no unseen-image items in these runs)\n"
    return "\n".join(lines) + "\n\nImages in no training set; over-refusal = fraction of answers that refuse.\n"


def table2(summaries: list[dict]) -> str:
    """Markdown Table 2 (ablation): ROUGE-L per run with the mask rule (conflict / magnitude) it used."""
    cols = [f"{s.title()} {TASK_ABBR[t]}{ARROW.get((s, t), '↑')}" for s in ("forget", "retain") for t in TASKS]
    lines = ["| Method | Directional Conflict | Relative Magnitude | " + " | ".join(cols) + " |",
             "|---" * (len(cols) + 3) + "|"]
    for s in summaries:
        conflict, magnitude = MODE_FLAGS.get(s["run"].get("mode") or "", ("-", "-"))
        cells = [_fmt(s["groups"][f"{st}/{t}"]["rougeL_f"], 3) for st in ("forget", "retain") for t in TASKS]
        lines.append(f"| {_label(s)} [{s['run']['split']}] | {conflict} | {magnitude} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nValues: ROUGE-L F-measure.\n"


def _r(s: dict, key: str) -> float:
    v = s["groups"][key]["rougeL_f"]
    return float("nan") if v is None else v


def figures(summaries: list[dict], out: Path) -> list[Path]:
    """Write the trade-off, k-sweep and understanding-by-image-type PNGs into `out`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(5, 4))
    for s in summaries:
        x = (_r(s, "forget/image_memory") + _r(s, "forget/text_memory")) / 2
        y = (_r(s, "retain/image_memory") + _r(s, "retain/text_memory")) / 2
        ax.scatter([x], [y])
        ax.annotate(f"{_label(s)} [{s['run']['split']}]", (x, y), fontsize=7)
    ax.set_xlabel("forget memory ROUGE-L (lower = more forgetting)")
    ax.set_ylabel("retain memory ROUGE-L (higher = better kept)")
    ax.set_title("Forget vs retain trade-off")
    written.append(save_figure(fig, out / "tradeoff.png"))

    swept = [s for s in summaries if s["run"].get("k") is not None]
    if swept:
        fig, ax = plt.subplots(figsize=(5, 4))
        for key in ("forget/text_memory", "forget/image_memory", "retain/text_memory", "retain/image_memory"):
            pts = sorted((s["run"]["k"], _r(s, key)) for s in swept)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key.replace("/", " "))
        ax.set_xlabel("k")
        ax.set_ylabel("ROUGE-L")
        ax.set_title("Effect of k (cf. paper Fig. 4)")
        ax.legend(fontsize=7)
        written.append(save_figure(fig, out / "k_sweep.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    keys = ("forget/portrait", "forget/clinical", "retain/portrait", "retain/clinical")
    width = 0.8 / len(keys)
    for j, key in enumerate(keys):
        vals = [s["understanding_by_image_type"][key]["rougeL_f"] or 0.0 for s in summaries]
        ax.bar([i + j * width for i in range(len(summaries))], vals, width, label=key.replace("/", " "))
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(summaries))], [_label(s) for s in summaries],
                  rotation=30, fontsize=7)
    ax.set_ylabel("image understanding ROUGE-L")
    ax.set_title("Understanding by image type (cf. paper Fig. 5)")
    ax.legend(fontsize=7)
    written.append(save_figure(fig, out / "understanding_by_type.png"))
    return written


def paired_section(runs: list[str | Path], summaries: list[dict], reference: str = "smfa") -> list[str]:
    """SMFA minus every other run of its split, item by item (paired bootstrap), where the runs'
    items.jsonl are at hand and one of them is labelled `reference`."""
    from .reproduce.uncertainty import paired_records, paired_table

    by_split: dict[str, dict[str, Path]] = {}
    for run, s in zip(runs, summaries):
        d = Path(run) if Path(run).is_dir() else Path(run).parent
        if (d / "items.jsonl").is_file():
            by_split.setdefault(s["run"]["split"], {})[s["run"].get("method") or "model"] = d / "items.jsonl"
    md = []
    for split, items in by_split.items():
        if reference in items and len(items) > 1:
            recs = paired_records(items, reference=reference, split=split, phrasing="run", seed=0)
            md += [f"## Paired differences ({split}, ROUGE-L)", "", paired_table(recs, split, "rougeL", "run")]
    return md


def write_report(runs: list[str | Path], out: str | Path) -> Path:
    """Combine runs into out/report.md (Tables 1 and 2) and figures; returns the markdown path."""
    summaries = [load_summary(r) for r in runs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pngs = figures(summaries, out)
    from .privacy_report import privacy_sections

    dirs = [Path(r) if Path(r).is_dir() else Path(r).parent for r in runs]
    priv_md, priv_pngs = privacy_sections(summaries, out, dirs)  # empty for runs without privacy metrics
    pngs += priv_pngs
    md = ["# smfa benchmark report", "", "## Table 1", "", table1(summaries), "## Utility on unseen images", "",
          unseen_table(summaries), "## Table 2 (ablation)", "", table2(summaries), *paired_section(runs, summaries),
          *priv_md, "## Figures", ""]
    md += [f"![{p.stem}]({p.name})" for p in pngs]
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    return path
