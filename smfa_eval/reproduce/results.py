"""results.json: one record per number (results are data first; every table, figure
and claim is a view of it).

A record: {"model", "split", "set", "task", "phrasing", "metric", "value", "seed", "n",
"ci_low", "ci_high"} plus "k" where a k applies and "image_type" for the per-image-type
understanding rows. Metrics: `rougeL` (F-measure), `fact` and `meaningful` (0-10, the
judge's), `refusal` (the fraction of answers that refuse: over-refusal outside the forget
set), `n` (items), and `rougeL_ceiling`: the ROUGE-L that a perfect memoriser of the
*training* answers would score against the evaluation's references (the paraphrased
references are worded differently, so even perfect recall scores below 1 there). `n` on a
record is the number of items its value averages (judge failures excluded); `ci_low`/`ci_high`
the 95 % bootstrap interval over those items (`smfa_eval/bootstrap.py`). Sets: forget,
retain, and unseen (task general_understanding: images in no training set).
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean
from typing import Any

from ..bootstrap import bootstrap_ci
from ..metrics import rouge_l
from ..schema import EXTRA_SETS, TASKS, Bench

PHRASINGS = {"paraphrase": "eval", "template": "eval_template"}
METRICS = {"rougeL": "rougeL_f", "fact": "fact", "meaningful": "meaningful", "refusal": "refusal"}
UNDERSTANDING_TASKS = ("image_understanding", "general_understanding")


def training_answers(bench: Bench) -> dict[tuple[str, str, str], str]:
    """(profile, task, attribute) -> the fine-tuning answer; the fun fact's parts (talent,
    hobby, food) map to the fun-fact answer, the only place they are trained."""
    out: dict[tuple[str, str, str], str] = {}
    for it in bench.qa("finetune"):
        out[(it.profile_id or "", it.task, it.attribute)] = it.answer
        if it.attribute == "fun_fact":
            for part in ("talent", "hobby", "food"):
                out[(it.profile_id or "", it.task, part)] = it.answer
    return out


def ceilings(bench: Bench, items_file: str) -> dict[str, float]:
    """Item id -> ROUGE-L F of the training answer against the item's reference
    (understanding answers are trained word for word on general images: their ceiling is the
    reference itself)."""

    train = training_answers(bench)
    out = {}
    extra = [p + items_file for p in EXTRA_SETS.values() if p + items_file in bench.manifest.files]
    for it in [it for key in (items_file, *extra) for it in bench.qa(key)]:
        if it.task in UNDERSTANDING_TASKS:
            out[it.id] = 1.0
            continue
        ans = train.get((it.profile_id or "", it.task, it.attribute))
        out[it.id] = rouge_l(ans, it.answer)[0] if ans is not None else 0.0
    return out


def records_from_items(items_path: Path, *, model: str, split: str, phrasing: str, seed: int,
                       ceiling: dict[str, float], k: float | None = None) -> list[dict]:
    """Per (set, task) means of one evaluation's items.jsonl with their item counts and
    bootstrap intervals, and per image type for understanding."""
    rows = read_items(items_path)
    base = {"model": model, "split": split, "phrasing": phrasing, "seed": seed, **({"k": k} if k is not None else {})}
    out: list[dict] = []

    def stat(extra: dict, metric: str, vals: list[float]) -> dict:
        # the seed names the cell, not the model: every model of a cell is resampled alike
        cell = "|".join(str(x) for x in (split, extra["set"], extra["task"], extra.get("image_type"), phrasing,
                                         seed, metric))
        lo, hi = bootstrap_ci(vals, cell)
        return {**base, **extra, "metric": metric, "value": round(fmean(vals), 6), "n": len(vals),
                "ci_low": round(lo, 6), "ci_high": round(hi, 6)}

    def emit(sel: list[dict], extra: dict) -> None:
        if not sel:
            return
        n = float(len(sel))
        out.append({**base, **extra, "metric": "n", "value": n, "n": len(sel), "ci_low": n, "ci_high": n})
        for metric, key in METRICS.items():
            vals = [r[key] for r in sel if r.get(key) is not None]
            if vals:
                out.append(stat(extra, metric, vals))
        out.append(stat(extra, "rougeL_ceiling", [ceiling.get(r["id"], 0.0) for r in sel]))

    for s, t in cells(rows):
        emit([r for r in rows if r["set"] == s and r["task"] == t], {"set": s, "task": t})
        if t in UNDERSTANDING_TASKS:
            for kind in ("portrait", "clinical"):
                emit([r for r in rows if r["set"] == s and r["task"] == t and r["image_type"] == kind],
                     {"set": s, "task": t, "image_type": kind})
    return out


def read_items(path: Path) -> list[dict]:
    """The rows of an evaluation's items.jsonl."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def cells(rows: list[dict]) -> list[tuple[str, str]]:
    """(set, task) cells: forget/retain x TASKS in table order, then any other set's cells
    the rows hold (unseen/general_understanding)."""
    main = [(s, t) for s in ("forget", "retain") for t in TASKS]
    return main + sorted({(r["set"], r["task"]) for r in rows} - set(main))


def value(records: list[dict], **where: Any) -> float | None:
    """The one record matching `where` (image_type absent unless given), or None."""
    rec = find(records, **where)
    return None if rec is None else rec["value"]


def find(records: list[dict], **where: Any) -> dict | None:
    """The record itself (value, n, interval) as `value` finds it; paired-difference records
    (those with "vs") and sequential ones ("request") only when asked for."""
    where.setdefault("image_type", None)
    where.setdefault("vs", None)
    where.setdefault("request", None)
    hits = [r for r in records if all(r.get(k) == v for k, v in where.items())]
    return hits[0] if hits else None


def write_results(records: list[dict], path: Path) -> Path:
    """Write `records` to `path` atomically (a .tmp file, then rename); returns the path."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
