"""The report's privacy views of run summaries: the privacy table, the robustness table (each
method before and after each attack) and their figures. Runs without privacy metrics are
left out of these views; runs named METHOD+ATTACK (smfa attack) are the attacked models."""

from __future__ import annotations

from pathlib import Path
from statistics import fmean

ATTACKS = ("relearn", "int8", "int4", "perturb")
MEMORY = ("forget/image_memory", "forget/text_memory")


def _label(s: dict) -> str:
    r = s["run"]
    label = r.get("method") or "model"
    return f"{label} (k={r['k']:g})" if r.get("k") is not None else label


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _mean(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None]
    return fmean(vals) if vals else None


def forget_memory(s: dict, key: str) -> float | None:
    """Mean over the forget set's image and text memory groups of `key` (rougeL_f, mcq_acc)."""
    return _mean([s["groups"].get(g, {}).get(key) for g in MEMORY])


def split_attack(label: str) -> tuple[str, str | None]:
    """"smfa+int4" -> ("smfa", "int4"); a label without a known attack -> (label, None)."""
    base, _, attack = label.rpartition("+")
    return (base, attack) if base and attack in ATTACKS else (label, None)


def privacy_table(summaries: list[dict]) -> str | None:
    """Markdown table of the privacy metrics of the runs that have them, with its legend; None if none."""
    rows = [s for s in summaries if s.get("privacy")]
    if not rows:
        return None
    cols = ["Forget MCQ↓", "Forget TR→1", "Forget quality↑", "MIA LOSS→.5", "MIA Zlib→.5", "MIA Min-K→.5",
            "MIA Min-K++→.5", "Retain MCQ↑", "Over-refusal↓", "Utility↑"]
    lines = ["| Method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for s in rows:
        p, g = s["privacy"], s["groups"]
        cells = [_fmt(forget_memory(s, "mcq_acc")), _fmt(_mean([g.get(k, {}).get("truth_ratio") for k in MEMORY])),
                 _fmt(p.get("forget_quality"), 4)]
        cells += [_fmt(p.get(f"mia_auc_{m}")) for m in ("loss", "zlib", "mink", "minkpp")]
        cells += [_fmt(_mean([g.get(k, {}).get("mcq_acc") for k in ("retain/image_memory", "retain/text_memory")])),
                  _fmt(p.get("over_refusal")), _fmt(p.get("utility"))]
        lines.append(f"| {_label(s)} [{s['run']['split']}] | " + " | ".join(cells) + " |")
    note = ("\nMCQ: accuracy over four options (length-normalised log-likelihood); TR: truth ratio "
            "(forget: mean min(R, 1/R)); forget quality: KS p-value of the forget truth ratios against the "
            "retrained oracle's; MIA: AUC of forget-set vs holdout QA (0.5 = indistinguishable); over-refusal: "
            "share of retain and understanding answers that refuse; utility: harmonic mean of the retained "
            "abilities. See docs/privacy.md.\n")
    return "\n".join(lines) + "\n" + note


def robustness(summaries: list[dict], dirs: list[Path] | None = None) -> dict[tuple[str, str], dict[str, dict]]:
    """(split, method) -> {"before" or attack: {"rougeL": forget memory ROUGE-L, "mcq": forget MCQ}},
    plus "relearn_before" (the method on the relearn run's own items) when the run
    directories (`dirs`, in the order of `summaries`) hold items.jsonl."""
    out: dict[tuple[str, str], dict[str, dict]] = {}
    where: dict[tuple[str, str, str], Path] = {}
    for i, s in enumerate(summaries):
        # by method name, not display label: "smfa (k=2)" and its attacked "smfa+int4" pair up
        base, attack = split_attack(s["run"].get("method") or "model")
        out.setdefault((s["run"]["split"], base), {})[attack or "before"] = {
            "rougeL": forget_memory(s, "rougeL_f"), "mcq": forget_memory(s, "mcq_acc")}
        if dirs is not None:
            where[(s["run"]["split"], base, attack or "before")] = Path(dirs[i])
    for (split, base), by in out.items():
        before, after = where.get((split, base, "before")), where.get((split, base, "relearn"))
        if before and after and (before / "items.jsonl").is_file() and (after / "items.jsonl").is_file():
            from .privacy import forget_memory_means, read_rows

            ids = {r["id"] for r in read_rows(after / "items.jsonl")}
            means = forget_memory_means(read_rows(before / "items.jsonl"), ids)
            by["relearn_before"] = {"rougeL": _mean([m["rougeL"] for m in means.values()]),
                                    "mcq": _mean([m["mcq_acc"] for m in means.values()])}
    return {k: v for k, v in out.items() if any(a in v for a in ATTACKS)}


def robustness_table(summaries: list[dict], dirs: list[Path] | None = None) -> str | None:
    """Markdown table of forget memory before and after each attack; None when no attack ran."""
    table = robustness(summaries, dirs)
    if not table:
        return None
    cols = [f"{a} {m}" for a in ("before", "relearn_before", *ATTACKS) for m in ("R", "MCQ")]
    lines = ["| Method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for (split, method), by in sorted(table.items()):
        cells = [_fmt(by.get(a, {}).get(m)) for a in ("before", "relearn_before", *ATTACKS) for m in ("rougeL", "mcq")]
        lines.append(f"| {method} [{split}] | " + " | ".join(cells) + " |")
    return ("\n".join(lines) + "\n\nForget-set memory (image + text) ROUGE-L F and MCQ accuracy before and after "
            "each attack (smfa attack; lower = the forgetting survived). relearn is evaluated on the forget facts "
            "it did not train on; relearn_before is the method on those same items. `-`: not run.\n")


def privacy_figures(summaries: list[dict], out: Path, dirs: list[Path] | None = None) -> list[Path]:
    """forget_quality_vs_utility_<split>.png per split, robustness.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plotting import save_figure

    written = []
    by_split: dict[str, list[dict]] = {}
    for s in summaries:
        p = s.get("privacy") or {}
        if p.get("forget_quality") is not None and p.get("utility") is not None:
            by_split.setdefault(s["run"]["split"], []).append(s)
    for split, group in sorted(by_split.items()):
        fig, ax = plt.subplots(figsize=(5, 4))
        for s in group:
            x, y = max(s["privacy"]["forget_quality"], 1e-12), s["privacy"]["utility"]
            ax.scatter([x], [y])
            ax.annotate(_label(s), (x, y), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("forget quality (KS p-value vs oracle; higher = closer to never trained)")
        ax.set_ylabel("model utility (harmonic mean)")
        ax.set_title(f"Forget quality vs utility [{split}]")
        written.append(save_figure(fig, out / f"forget_quality_vs_utility_{split}.png"))
    table = robustness(summaries, dirs)
    if table:
        fig, ax = plt.subplots(figsize=(7, 4))
        keys = sorted(table)
        phases = ("before", *ATTACKS)
        width = 0.8 / len(phases)
        for j, ph in enumerate(phases):
            vals = [table[k].get(ph, {}).get("rougeL") or 0.0 for k in keys]
            ax.bar([i + j * width for i in range(len(keys))], vals, width, label=ph)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(keys))], [f"{m} [{sp}]" for sp, m in keys],
                      rotation=30, fontsize=7)
        ax.set_ylabel("forget memory ROUGE-L")
        ax.set_title("Robustness: forget ROUGE-L before / after each attack")
        ax.legend(fontsize=7)
        written.append(save_figure(fig, out / "robustness.png"))
    return written


def privacy_sections(summaries: list[dict], out: Path, dirs: list[Path] | None = None) -> tuple[list[str], list[Path]]:
    """The report's markdown lines for the privacy and robustness tables, and their figures
    (`dirs`: the runs' directories, in the order of `summaries`)."""
    md: list[str] = []
    t = privacy_table(summaries)
    if t:
        md += ["## Privacy (forget quality, membership inference, over-refusal, utility)", "", t]
    r = robustness_table(summaries, dirs)
    if r:
        md += ["## Robustness (attacks)", "", r]
    return md, (privacy_figures(summaries, out, dirs) if md else [])
