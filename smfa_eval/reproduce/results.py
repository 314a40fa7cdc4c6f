"""results.json: one record per number (DESIGN: results are data first; every table, figure
and claim is a view of it).

A record: {"model", "split", "set", "task", "phrasing", "metric", "value", "seed"} plus "k"
where a k applies and "image_type" for the per-image-type understanding rows. Metrics:
`rougeL` (F-measure), `fact` and `meaningful` (0-10, the judge's), `n` (items), and
`rougeL_ceiling`: the ROUGE-L that a perfect memoriser of the *training* answers would score
against the evaluation's references (the paraphrased references are worded differently, so
even perfect recall scores below 1 there).
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean

from ..metrics import rouge_l
from ..schema import TASKS, Bench

PHRASINGS = {"paraphrase": "eval", "template": "eval_template"}
METRICS = {"rougeL": "rougeL_f", "fact": "fact", "meaningful": "meaningful"}


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
    for it in bench.qa(items_file):
        if it.task == "image_understanding":
            out[it.id] = 1.0
            continue
        ans = train.get((it.profile_id or "", it.task, it.attribute))
        out[it.id] = rouge_l(ans, it.answer)[0] if ans is not None else 0.0
    return out


def records_from_items(items_path: Path, *, model: str, split: str, phrasing: str, seed: int,
                       ceiling: dict[str, float], k: float | None = None) -> list[dict]:
    """Per (set, task) means of one evaluation's items.jsonl, and per image type for understanding."""
    rows = [json.loads(line) for line in items_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    base = {"model": model, "split": split, "phrasing": phrasing, "seed": seed, **({"k": k} if k is not None else {})}
    out: list[dict] = []

    def emit(sel: list[dict], extra: dict) -> None:
        if not sel:
            return
        out.append({**base, **extra, "metric": "n", "value": float(len(sel))})
        for metric, key in METRICS.items():
            vals = [r[key] for r in sel if r.get(key) is not None]
            if vals:
                out.append({**base, **extra, "metric": metric, "value": round(fmean(vals), 6)})
        out.append({**base, **extra, "metric": "rougeL_ceiling",
                    "value": round(fmean(ceiling.get(r["id"], 0.0) for r in sel), 6)})

    for s in ("forget", "retain"):
        for t in TASKS:
            emit([r for r in rows if r["set"] == s and r["task"] == t], {"set": s, "task": t})
        for kind in ("portrait", "clinical"):
            emit([r for r in rows if r["set"] == s and r["task"] == "image_understanding" and r["image_type"] == kind],
                 {"set": s, "task": "image_understanding", "image_type": kind})
    return out


def value(records: list[dict], **where) -> float | None:
    """The one record matching `where` (image_type absent unless given), or None."""
    where.setdefault("image_type", None)
    hits = [r["value"] for r in records if all(r.get(k) == v for k, v in where.items())]
    return hits[0] if hits else None


def write_results(records: list[dict], path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
