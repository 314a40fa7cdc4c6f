"""Is a difference between two rows real? Paired bootstrap records over the same items, their
table, and the spread of a number across seeds.

Paired records sit in results.json next to the others: {"model": A, "vs": B, "metric":
"rougeL_diff" | "fact_diff", "value": mean(A - B), "n", "ci_low", "ci_high", split, set, task,
phrasing, seed} (plus A's "k"). `results.find` returns them only when `vs` is asked for, so no
other view mistakes a difference for a score.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean, stdev

from ..bootstrap import paired_bootstrap
from .results import cells, find, read_items

PAIRED_METRICS = {"rougeL": "rougeL_f", "fact": "fact"}
ABBR = {"image_understanding": "I-U", "image_memory": "I-M", "text_memory": "T-M", "general_understanding": "G-U"}


def _by_id(rows: list[dict], s: str, t: str, key: str) -> dict[str, float]:
    return {r["id"]: r[key] for r in rows if r["set"] == s and r["task"] == t and r.get(key) is not None}


def paired_records(items: dict[str, Path], *, reference: str, split: str, phrasing: str, seed: int,
                   k: float | None = None) -> list[dict]:
    """`reference` - every other label, per (set, task) cell and metric, over the items both
    evaluated (`items`: label -> items.jsonl of the same split and phrasing)."""
    if reference not in items:
        return []
    ref = read_items(items[reference])
    out = []
    for other, path in items.items():
        if other == reference:
            continue
        rows = read_items(path)
        for s, t in cells(ref):
            for metric, key in PAIRED_METRICS.items():
                a, b = _by_id(rows, s, t, key), _by_id(ref, s, t, key)
                if not set(a) & set(b):
                    continue
                # one key per cell: the same resampled items for every comparison in the cell
                p = paired_bootstrap(a, b, f"paired|{split}|{s}|{t}|{phrasing}|{seed}|{metric}")
                out.append({"model": reference, "vs": other, "split": split, "set": s, "task": t,
                            "phrasing": phrasing, "seed": seed, "metric": f"{metric}_diff",
                            "value": round(p.diff, 6), "n": p.n, "ci_low": round(p.ci_low, 6),
                            "ci_high": round(p.ci_high, 6), **({"k": k} if k is not None else {})})
    return out


def paired_table(records: list[dict], split: str, metric: str = "rougeL", phrasing: str = "paraphrase") -> str:
    """Rows: reference - other; cells: the mean difference and its 95 % interval; a difference
    whose interval includes 0 is marked "≈" (not distinguishable on these items)."""
    pairs: list[tuple[str, str]] = []
    cols: list[tuple[str, str]] = []
    for r in records:
        if (r.get("vs") is None or r["split"] != split or r["metric"] != f"{metric}_diff"
                or r["phrasing"] != phrasing):
            continue
        if (r["model"], r["vs"]) not in pairs:
            pairs.append((r["model"], r["vs"]))
        if (r["set"], r["task"]) not in cols:
            cols.append((r["set"], r["task"]))
    if not pairs:
        return f"(no paired records for {split})\n"
    digits = 3 if metric == "rougeL" else 2
    out = ["| difference | " + " | ".join(f"{s} {ABBR.get(t, t)}" for s, t in cols) + " |",
           "|---" * (len(cols) + 1) + "|"]
    for a, b in pairs:
        cells_ = []
        for s, t in cols:
            rec = find(records, model=a, vs=b, split=split, set=s, task=t, phrasing=phrasing,
                       metric=f"{metric}_diff")
            if rec is None:
                cells_.append("-")
                continue
            mark = " ≈" if rec["ci_low"] <= 0.0 <= rec["ci_high"] else ""
            lo, hi = rec["ci_low"], rec["ci_high"]
            cells_.append(f"{rec['value']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]{mark}")
        out.append(f"| {a} − {b} | " + " | ".join(cells_) + " |")
    return "\n".join(out) + (f"\n\n{metric} of the first minus the second over the same items, with the 95 % paired "
                             "bootstrap interval; ≈ = the interval includes 0 (no difference shown on these items).\n")


def seed_spread(paths: list[Path], metric: str = "fact", phrasing: str = "paraphrase") -> str:
    """Mean ± standard deviation across seeds (one results.json per seed) of every score cell
    that at least two seeds report."""
    runs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    by_cell: dict[tuple, dict[int, float]] = {}
    for recs in runs:
        for r in recs:
            if r.get("vs") is not None or r["metric"] != metric or r["phrasing"] != phrasing or r.get("image_type"):
                continue
            by_cell.setdefault((r["split"], r["model"], r["set"], r["task"]), {})[r["seed"]] = r["value"]
    rows = {c: v for c, v in by_cell.items() if len(v) >= 2}
    if not rows:
        return "(fewer than two seeds report the same cell)\n"
    out = ["| split | model | set | task | seeds | mean ± sd |", "|---|---|---|---|---|---|"]
    for (split, model, s, t), v in sorted(rows.items()):
        vals = list(v.values())
        out.append(f"| {split} | {model} | {s} | {ABBR.get(t, t)} | {', '.join(map(str, sorted(v)))} | "
                   f"{fmean(vals):.2f} ± {stdev(vals):.2f} |")
    return "\n".join(out) + f"\n\n{metric} ({phrasing}): mean and sample standard deviation across seeds.\n"
