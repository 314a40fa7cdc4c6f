"""Utility on unseen images in the reproduction's report: a table per split and the collapse
check (a model whose unseen-image understanding falls far below the original's is named with
its numbers, so RESULTS.md cannot miss it)."""

from __future__ import annotations

from .cells import fmt, models_in, pm
from .results import find, value

SET, TASK = "unseen", "general_understanding"
COLLAPSE = 0.5  # Fact below half the original's on unseen images = collapsed
# ... judged only where the original itself scores this much (0-10): below it, a halving is
# one item's worth of noise, not a collapse
COLLAPSE_FLOOR = 1.0


def utility_table(records: list[dict], splits: tuple[str, ...], phrasing: str = "paraphrase") -> str:
    """Rows: models per split; columns: ROUGE-L, Fact, Meaningful, over-refusal rate, items."""
    out = ["| model | R | F | M | over-refusal | n |", "|---|---|---|---|---|---|"]
    seen = False
    for split in splits:
        out.append(f"| **{split}** | | | | | |")
        for m in models_in(records, split):
            q = dict(model=m, split=split, set=SET, task=TASK, phrasing=phrasing)
            if m.startswith("smfa@") or find(records, metric="n", **q) is None:
                continue
            seen = True
            cells = [pm(find(records, metric="rougeL", **q), 3)]
            cells += [pm(find(records, metric=k, **q)) for k in ("fact", "meaningful", "refusal")]
            out.append(f"| {m} | " + " | ".join(cells) + f" | {fmt(value(records, metric='n', **q), 0)} |")
    if not seen:
        return "(no unseen-image records: the benchmark was built before the unseen set existed)\n"
    return "\n".join(out) + ("\n\nThe general training data's questions on images drawn for this set and in no "
                             "training set (task general_understanding). over-refusal = fraction of answers that "
                             "refuse; ± = half the 95 % bootstrap interval.\n")


def collapses(records: list[dict], splits: tuple[str, ...], reference: str = "original",
              phrasing: str = "paraphrase") -> list[str]:
    """One line per (split, model) whose unseen-image Fact is below COLLAPSE x the reference's
    (where the reference reaches COLLAPSE_FLOOR)."""
    lines = []
    for split in splits:
        q = dict(split=split, set=SET, task=TASK, phrasing=phrasing, metric="fact")
        ref = value(records, model=reference, **q)
        if ref is None or ref < COLLAPSE_FLOOR:
            continue
        for m in models_in(records, split):
            v = value(records, model=m, **q)
            if m == reference or m.startswith("smfa@") or v is None or v >= COLLAPSE * ref:
                continue
            rr = value(records, model=m, split=split, set=SET, task=TASK, phrasing=phrasing, metric="refusal")
            lines.append(f"{m} collapses on unseen images ({split}): Fact {v:.2f} vs {ref:.2f} for {reference}"
                         f" ({v / ref:.2f}x), over-refusal {fmt(rr)}")
    return lines
