"""`smfa eval`: generate answers for a split's evaluation items, score them (ROUGE-L and a
judge), and write per-item results, a summary and the paper's Table 1 row.

Files under `out`: run.json (the configuration; a resume must match it), generations.jsonl
and judgements.jsonl (append-only, resumable), items.jsonl, summary.json, table1.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from .generate import Generator, Prompt, read_done, run_generation
from .judges import Judge, JudgeRequest, JudgeResult
from .metrics import rouge_l
from .schema import EVAL_TASKS, EXTRA_SETS, TASKS, Bench, BenchDataError, QAItem, write_jsonl

SETS = ("forget", "retain")
METRIC_KEYS = ("rougeL_f", "rougeL_r", "fact", "meaningful", "refusal")


@dataclass(frozen=True)
class EvalItem:
    set: str
    item: QAItem


class RunMismatch(ValueError):
    """An output directory that holds a different run."""


def select_items(bench: Bench, split: str, tasks: Sequence[str] = EVAL_TASKS, limit: int | None = None,
                 items: str = "eval", exclude: Sequence[str] = ()) -> list[EvalItem]:
    """The split's forget profiles are the forget set; every other profile is the retain set;
    the EXTRA_SETS files of `items` add their sets. `limit` keeps the first N items of each
    (set, task) in file order; `items` names the manifest file ("eval": paraphrases;
    "eval_template": the fine-tuning wordings); `exclude`: item ids left out (e.g. the facts a
    relearning attack trained on)."""
    forget = set(bench.split(split).forget)
    skip = set(exclude)
    counts: dict[tuple[str, str], int] = {}
    out = []

    def take(s: str, it: QAItem) -> None:
        n = counts.get((s, it.task), 0)
        if it.task not in tasks or it.id in skip or (limit is not None and n >= limit):
            return
        counts[(s, it.task)] = n + 1
        out.append(EvalItem(s, it))

    for it in bench.qa(items):
        take("forget" if it.profile_id in forget else "retain", it)
    for s, prefix in EXTRA_SETS.items():
        if prefix + items in bench.manifest.files:
            for it in bench.qa(prefix + items):
                take(s, it)
    if not any(e.set == "forget" for e in out):
        raise BenchDataError(f"{bench.path('eval')}: no evaluation items for the forget profiles of {split}")
    return out


def _check_run(out: Path, config: dict) -> None:
    path = out / "run.json"
    if path.is_file():
        old = json.loads(path.read_text())
        keys = ("model", "data", "split", "judge", "judge_options", "max_new_tokens", "limit", "tasks", "items",
                "exclude")
        old.setdefault("items", "eval")  # runs written before the template view existed
        old.setdefault("exclude", [])
        diff = [k for k in keys if old.get(k) != config.get(k)]
        if diff:
            raise RunMismatch(f"{out} holds a run with different {', '.join(diff)}; use another --out or --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _score(judge: Judge, reqs: list[JudgeRequest]) -> list[JudgeResult]:
    """judge.score(reqs); a judge that raises or answers the wrong number of results gives
    every request of the batch a `judge_error` (re-tried on the next run), never a crash."""
    name = getattr(judge, "name", judge)
    try:
        results = [JudgeResult(r.fact, r.meaningful, r.error) for r in judge.score(reqs)]
    except Exception as exc:  # a plugin's failure stays in its rows
        return [JudgeResult(error=f"judge {name!r} failed: {type(exc).__name__}: {exc}") for _ in reqs]
    if len(results) != len(reqs):  # which result belongs to which request is unknown: none counts
        return [JudgeResult(error=f"judge {name!r} failed: returned {len(results)} results for {len(reqs)} "
                                  "requests") for _ in reqs]
    return results


def _judge_all(items: list[EvalItem], preds: dict[str, str], judge: Judge, path: Path, batch_size: int,
               progress: bool) -> dict[str, dict]:
    """Judge every item without a successful judgement yet; failures are re-tried on a rerun."""
    from tqdm import tqdm

    done = {k: v for k, v in read_done(path).items() if not v.get("error")}
    todo = [e for e in items if e.item.id not in done]
    with path.open("a", encoding="utf-8") as fh, tqdm(total=len(items), initial=len(items) - len(todo), desc="judge",
                                                      unit="item", disable=not progress) as bar:
        for s in range(0, len(todo), batch_size):
            batch = todo[s:s + batch_size]
            reqs = [JudgeRequest(e.item.question, e.item.answer, preds[e.item.id], tuple(e.item.keys)) for e in batch]
            results = _score(judge, reqs)
            for e, r in zip(batch, results):
                rec = {"id": e.item.id, "fact": r.fact, "meaningful": r.meaningful, "error": r.error}
                fh.write(json.dumps(rec) + "\n")
                done[e.item.id] = rec
            fh.flush()
            bar.update(len(batch))
    return done


def refuses(text: str, fact: float | None = None) -> bool:
    """The answer refuses (`privacy_metrics.is_refusal`: a refusal-pool sentence or core, or the
    heuristic judge's markers — the markers alone miss "I can't help with that question" —
    unless the judge found the asked fact in it)."""
    from .privacy_metrics import is_refusal as refusal

    return refusal(text, fact)


def _mean(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return round(fmean(vals), 6) if vals else None


def _ci(sel: list[dict], key: str, cell: str) -> list[float] | None:
    from .bootstrap import bootstrap_ci

    vals = [r[key] for r in sel if r.get(key) is not None]
    return [round(x, 6) for x in bootstrap_ci(vals, f"{cell}|{key}")] if vals else None


def summarise(rows: list[dict]) -> dict:
    """Per (set, task) group: n, the metric means, their 95 % bootstrap intervals ("ci")."""
    def group(sel: list[dict], cell: str = "") -> dict:
        return {"n": len(sel), **{k: _mean(sel, k) for k in METRIC_KEYS},
                "ci": {k: _ci(sel, k, cell) for k in METRIC_KEYS},
                "judge_failed": sum(1 for r in sel if r.get("judge_error"))}

    pairs = [(s, t) for s in SETS for t in TASKS]
    pairs += sorted({(r["set"], r["task"]) for r in rows} - set(pairs))  # other sets: unseen/general_understanding
    groups = {f"{s}/{t}": group([r for r in rows if r["set"] == s and r["task"] == t], f"{s}/{t}") for s, t in pairs}
    by_type = {f"{s}/{kind}": group([r for r in rows if r["set"] == s and r["task"] == "image_understanding"
                                     and r["image_type"] == kind]) for s in SETS for kind in ("portrait", "clinical")}
    return {"groups": groups, "understanding_by_image_type": by_type,
            "judge_failed": sum(1 for r in rows if r.get("judge_error"))}


def run_eval(data: str | Path, split: str, out: str | Path, *, judge: Judge, judge_name: str,
             judge_options: dict | None = None, model: str | None = None, generator: Generator | None = None,
             batch_size: int = 8, max_new_tokens: int = 64, limit: int | None = None, tasks: Sequence[str] = EVAL_TASKS,
             method: str | None = None, k: float | None = None, mode: str | None = None, progress: bool = True,
             generator_factory: Callable[[], Generator] | None = None, items_file: str = "eval",
             privacy: bool = False, exclude: Sequence[str] = ()) -> dict:
    """Evaluate `model` (or a ready `generator`) on `split` of the benchmark at `data`;
    `items_file` as `select_items`' `items`. `privacy`: also the likelihood metrics of
    `privacy.py` (MCQ, truth ratio, MIA, over-refusal, utility; needs a model to score)."""
    bench = Bench(data)
    out = Path(out)
    items = select_items(bench, split, tasks, limit, items_file, exclude)
    config = {"model": str(model) if model else None, "data": str(Path(data).resolve()), "split": split,
              "items": items_file,
              "judge": judge_name, "judge_options": judge_options or {}, "max_new_tokens": max_new_tokens,
              "limit": limit, "tasks": list(tasks), "method": method or (Path(model).name if model else "model"),
              "k": k, "mode": mode, "schema_version": bench.manifest.schema_version, "privacy": privacy,
              "exclude": sorted(exclude)}
    _check_run(out, config)
    prompts = [Prompt(e.item.id, e.item.question, bench.root / e.item.image if e.item.image else None) for e in items]
    gen_path = out / "generations.jsonl"
    if len(read_done(gen_path)) < len(prompts):  # load the model only if there is work left
        if generator is None:
            if generator_factory is None:
                from .generate import HFGenerator

                generator = HFGenerator(model, max_new_tokens=max_new_tokens)  # type: ignore[arg-type]
            else:
                generator = generator_factory()
    preds = run_generation(prompts, generator, gen_path, batch_size, progress)  # type: ignore[arg-type]
    judged = _judge_all(items, preds, judge, out / "judgements.jsonl", batch_size, progress)
    rows = []
    for e in items:
        it, j = e.item, judged[e.item.id]
        f, r = rouge_l(preds[it.id], it.answer)
        rows.append({"id": it.id, "set": e.set, "task": it.task, "attribute": it.attribute, "image_type": it.image_type,
                     "profile_id": it.profile_id, "question": it.question, "answer": it.answer,
                     "prediction": preds[it.id], "rougeL_f": round(f, 6), "rougeL_r": round(r, 6),
                     "fact": j.get("fact"), "meaningful": j.get("meaningful"), "judge_error": j.get("error"),
                     # over-refusal wherever it should answer
                     "refusal": float(refuses(preds[it.id], j.get("fact")))})
    extra = None
    if privacy:
        from .privacy import add_privacy, scorer_for

        extra = add_privacy(bench, split, rows, scorer_for(model, generator), items_file=items_file,
                            exclude=exclude)
        write_jsonl(out / "mia.jsonl", extra.pop("mia_rows"))
    write_jsonl(out / "items.jsonl", rows)
    summary = {"run": config, **summarise(rows)}
    if extra:
        for key, vals in extra["groups"].items():
            summary["groups"].setdefault(key, {}).update(vals)
        summary["privacy"] = extra["privacy"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    from .report import table1

    (out / "table1.md").write_text(table1([summary]))
    return summary
