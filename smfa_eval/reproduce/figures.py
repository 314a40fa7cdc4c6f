"""The reproduction's figures, drawn from results.json records only: the k-sweep (paper
Fig. 4), understanding per image type (Fig. 5) and the forget/retain trade-off."""

from __future__ import annotations

from pathlib import Path

from ..plotting import save_figure
from .cells import MEMORY, is_sweep, memory_fact, models_in
from .results import value


def write_figures(records: list[dict], split: str, out: Path) -> list[Path]:
    """Write the report's PNGs for `split` (k sweep, understanding by image type, ...); returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    models = [m for m in models_in(records, split) if not m.startswith("smfa@")]
    sweep = sorted({(r["k"], r["model"]) for r in records if r["split"] == split and is_sweep(r["model"])})
    if len(sweep) > 1:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for ax, metric in zip(axes, ("fact", "rougeL")):
            for s in ("forget", "retain"):
                for t in MEMORY:
                    ys = [value(records, model=m, split=split, set=s, task=t, phrasing="paraphrase", metric=metric)
                          for _, m in sweep]
                    ax.plot([k for k, _ in sweep], ys, marker="o", label=f"{s} {t.replace('_', ' ')}")
            orig = memory_fact(records, "original", split, "forget", metric)
            if orig is not None:
                ax.axhline(orig, color="gray", ls=":", lw=1, label="original (forget, mean)")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("k")
            ax.set_ylabel("Fact (0-10)" if metric == "fact" else "ROUGE-L")
            ax.set_title(f"SMFA vs k ({split}), {metric}")
        axes[0].legend(fontsize=7)
        written.append(save_figure(fig, out / "k_sweep.png", dpi=110))

    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(models) + 2), 3.8))
    keys = [(s, kind) for s in ("forget", "retain") for kind in ("portrait", "clinical")]
    width = 0.8 / len(keys)
    for j, (s, kind) in enumerate(keys):
        vals = [value(records, model=m, split=split, set=s, task="image_understanding", phrasing="paraphrase",
                      metric="fact", image_type=kind) or 0.0 for m in models]
        ax.bar([i + j * width for i in range(len(models))], vals, width, label=f"{s} {kind}")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(models))], models, rotation=30, fontsize=7)
    ax.set_ylabel("understanding Fact (0-10)")
    ax.set_title(f"Image understanding by image type ({split})")
    ax.legend(fontsize=7)
    written.append(save_figure(fig, out / "understanding_by_type.png", dpi=110))

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for m in models:
        f, r = memory_fact(records, m, split, "forget"), memory_fact(records, m, split, "retain")
        u = [value(records, model=m, split=split, set=s, task="image_understanding", phrasing="paraphrase",
                   metric="fact") for s in ("forget", "retain")]
        if f is None or r is None or None in u:
            continue
        for ax, y in zip(axes, (r, sum(u) / 2)):  # type: ignore[arg-type]
            ax.scatter([f], [y])
            ax.annotate(m, (f, y), fontsize=7)
    axes[0].set_ylabel("retain memory Fact")
    axes[1].set_ylabel("understanding Fact")
    for ax in axes:
        ax.set_xlabel("forget memory Fact (lower = more forgotten)")
    fig.suptitle(f"Forgetting vs what is kept ({split}, paraphrased questions)")
    written.append(save_figure(fig, out / "tradeoff.png", dpi=110))
    return written
