"""The privacy evaluation of one model on one split (docs/privacy.md), on top of `smfa eval`:

* per evaluation item: `mcq_correct` (four options, `mcq.py`), `truth_ratio` (R), `refusal`;
* per (set, task) group: `mcq_acc`, `truth_ratio` (forget memory: mean min(R, 1/R); anything
  that should be kept: mean max(0, 1 - R)), `refusal_rate`;
* for the model: MIA AUCs (LOSS, Zlib, Min-K%, Min-K%++) of the split's forget file (the
  fine-tuning QA of the forget profiles: members) vs the holdout profiles' QA in the same
  wordings (non-members), `over_refusal`, `utility`, and `forget_quality` once a retrained
  oracle's run is known (`add_forget_quality`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean

from . import privacy_metrics as M
from .likelihood import LikelihoodScorer, ScoredText
from .mcq import options
from .schema import Bench, BenchDataError, QAItem

MIA_SCORES = ("loss", "zlib", "mink", "minkpp")
MIN_K = 0.2  # the share of lowest-probability tokens Min-K% and Min-K%++ average
FUN_FACT_PARTS = ("talent", "hobby", "food")


def _text(bench: Bench, it: QAItem, answer: str | None = None) -> ScoredText:
    return ScoredText(it.question, it.answer if answer is None else answer,
                      bench.root / it.image if it.image else None)


def answer_metrics(scorer: LikelihoodScorer, bench: Bench, items: Sequence[QAItem], pool: Sequence[QAItem],
                   holdout: Sequence[QAItem] = ()) -> dict[str, dict]:
    """item id -> {"mcq_correct": 0/1, "truth_ratio": R} for every eligible item (distractor
    values from `holdout` first, then `pool`: mcq.py)."""
    opts = options(items, pool, holdout)
    by_id = {it.id: it for it in items}
    flat = [(iid, _text(bench, by_id[iid], a)) for iid, answers in opts.items() for a in answers]
    scores = scorer.score([t for _, t in flat])
    per: dict[str, list[list[float]]] = {}
    for (iid, _), s in zip(flat, scores):
        per.setdefault(iid, []).append(s.logprobs)
    return {iid: {"mcq_correct": int(M.mcq_pick(lps) == 0), "truth_ratio": round(M.truth_ratio(lps[:1], lps[1:]), 6)}
            for iid, lps in per.items()}


def mia_scores(scorer: LikelihoodScorer, bench: Bench, items: Sequence[QAItem]) -> list[dict]:
    """The four membership scores of each item's answer (higher = more member-like)."""
    out = []
    for it, s in zip(items, scorer.score([_text(bench, it) for it in items])):
        out.append({"id": it.id, "loss": M.loss_score(s.logprobs), "zlib": M.zlib_score(s.logprobs, it.answer),
                    "mink": M.min_k_score(s.logprobs, MIN_K), "minkpp": M.min_k_pp_score(s.logprobs, s.mu, s.sigma, MIN_K)})
    return out


def mia_aucs(members: Sequence[dict], nonmembers: Sequence[dict]) -> dict[str, float]:
    """mia_auc_<score> and mia_gap_<score> (= |AUC - 0.5|) for each of MIA_SCORES."""
    out = {}
    for name in MIA_SCORES:
        auc = M.roc_auc([r[name] for r in members], [r[name] for r in nonmembers])
        out[f"mia_auc_{name}"] = round(auc, 6)
        out[f"mia_gap_{name}"] = round(M.mia_auc_gap(auc), 6)
    return out


def _keeps(row: dict) -> bool:
    """Rows whose answers should survive unlearning: the retain set, and understanding anywhere."""
    return row["set"] == "retain" or row["task"] == "image_understanding"


def group_metrics(rows: Sequence[dict], forget_memory: bool) -> dict:
    """mcq_acc, truth_ratio and refusal_rate of one (set, task) group of item rows."""
    mcq = [r["mcq_correct"] for r in rows if r.get("mcq_correct") is not None]
    trs = [r["truth_ratio"] for r in rows if r.get("truth_ratio") is not None]
    tr_stat = M.truth_ratio_forget if forget_memory else M.truth_ratio_retain
    return {"mcq_acc": round(fmean(mcq), 6) if mcq else None, "truth_ratio": round(tr_stat(trs), 6) if trs else None,
            "refusal_rate": round(M.refusal_rate([r["refusal"] for r in rows]), 6) if rows else None}


def utility(rows: Sequence[dict]) -> float | None:
    """Harmonic mean of what should be kept: retain-set memory ROUGE-L, MCQ accuracy and truth
    ratio, and understanding ROUGE-L and MCQ accuracy (the parts that can be computed)."""
    mem = [r for r in rows if r["set"] == "retain" and r["task"] != "image_understanding"]
    und = [r for r in rows if r["task"] == "image_understanding"]
    parts = []
    for sel, key in ((mem, "rougeL_f"), (mem, "mcq_correct"), (und, "rougeL_f"), (und, "mcq_correct")):
        vals = [r[key] for r in sel if r.get(key) is not None]
        if vals:
            parts.append(fmean(vals))
    trs = [r["truth_ratio"] for r in mem if r.get("truth_ratio") is not None]
    if trs:
        parts.append(M.truth_ratio_retain(trs))
    return round(M.harmonic_mean(parts), 6) if parts else None


def scorer_for(model: str | Path | None, generator: object | None) -> LikelihoodScorer:
    """A scorer on the generator's own loaded model where there is one (no second copy),
    else on the checkpoint at `model`."""
    if generator is not None and hasattr(generator, "model") and hasattr(generator, "tokenizer"):
        return LikelihoodScorer(generator.model, getattr(generator, "processor", None) or generator.tokenizer)
    if model is None:
        raise BenchDataError("privacy metrics need a model checkpoint (--model) to score likelihoods")
    return LikelihoodScorer.from_path(model)


def fact_of(it: QAItem) -> tuple[str, str]:
    """(profile, attribute) of an item; the fun fact's parts count as the fun fact, where they
    are trained."""
    return (it.profile_id or "", "fun_fact" if it.attribute in FUN_FACT_PARTS else it.attribute)


def add_privacy(bench: Bench, split: str, rows: list[dict], scorer: LikelihoodScorer, *, items_file: str = "eval",
                mia: bool = True, exclude: Sequence[str] = ()) -> dict:
    """Add the per-item metrics to `rows` (items.jsonl rows of `smfa eval` on `items_file`)
    and return the summary's additions: {"groups": {key: {...}}, "privacy": {...}, "mia_rows": [...]}.
    `exclude`: the evaluation item ids left out of the run; the forget-file rows about the same
    facts are left out of the MIA members too (a relearning attack trained on them)."""
    all_items = bench.qa(items_file)
    skip = set(exclude)
    skip_facts = {fact_of(it) for it in all_items if it.id in skip}
    items = {it.id: it for it in all_items}
    evaluated = [items[r["id"]] for r in rows if r["id"] in items]
    held = bench.qa("holdout_eval") if "holdout_eval" in bench.manifest.files else []
    per = answer_metrics(scorer, bench, evaluated, list(items.values()), held)
    for r in rows:
        r.update(per.get(r["id"], {"mcq_correct": None, "truth_ratio": None}))
        # run_eval already set `refusal` with the same detector; rows from elsewhere may lack it
        r.setdefault("refusal", float(M.is_refusal(r.get("prediction") or "", r.get("fact"))))
    groups = {}
    for s in ("forget", "retain"):
        for t in sorted({r["task"] for r in rows}):
            sel = [r for r in rows if r["set"] == s and r["task"] == t]
            groups[f"{s}/{t}"] = group_metrics(sel, forget_memory=(s == "forget" and t != "image_understanding"))
    keep = [r["refusal"] for r in rows if _keeps(r)]
    priv: dict = {"over_refusal": round(M.refusal_rate(keep), 6) if keep else None, "utility": utility(rows),
                  "forget_quality": None, "mia_min_k": MIN_K}
    mia_rows: list[dict] = []
    if mia and "holdout_qa" in bench.manifest.files:
        sp = bench.split(split)
        if not sp.forget_file:
            raise BenchDataError(f"{bench.root / 'manifest.json'}: split {split!r} has no forget_file for MIA")
        from .schema import read_qa

        members = [it for it in read_qa(bench.root / sp.forget_file, bench.root, bench.check_images)
                   if fact_of(it) not in skip_facts]
        nonmembers = bench.qa("holdout_qa")
        m, n = mia_scores(scorer, bench, members), mia_scores(scorer, bench, nonmembers)
        priv.update(mia_aucs(m, n), mia_members=len(m), mia_nonmembers=len(n))
        mia_rows = [{**r, "member": True} for r in m] + [{**r, "member": False} for r in n]
    else:
        priv.update({f"mia_auc_{k}": None for k in MIA_SCORES},
                    mia_note="no holdout profiles in the benchmark (smfa bench build --holdout N)")
    return {"groups": groups, "privacy": priv, "mia_rows": mia_rows}


def forget_truth_ratios(items_path: Path) -> list[float]:
    """The truth ratios of a run's forget-set memory items (what forget quality compares)."""
    rows = [json.loads(line) for line in items_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["truth_ratio"] for r in rows if r["set"] == "forget" and r["task"] != "image_understanding"
            and r.get("truth_ratio") is not None]


def add_forget_quality(run: Path, oracle: Path) -> float | None:
    """Forget quality of the eval run in `run` against the oracle's eval run: written into
    run/summary.json ("privacy" -> "forget_quality", "forget_quality_oracle") and returned."""
    method, ref = forget_truth_ratios(run / "items.jsonl"), forget_truth_ratios(oracle / "items.jsonl")
    fq = round(M.forget_quality(method, ref), 6) if method and ref else None
    path = run / "summary.json"
    summary = json.loads(path.read_text())
    summary.setdefault("privacy", {}).update(forget_quality=fq, forget_quality_oracle=str(oracle))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return fq


def read_rows(items_path: Path) -> list[dict]:
    """The rows of an items.jsonl, blank lines skipped."""
    return [json.loads(line) for line in items_path.read_text(encoding="utf-8").splitlines() if line.strip()]


def forget_memory_means(rows: Sequence[dict], ids: set[str] | None = None) -> dict[str, dict[str, float | None]]:
    """task -> {"rougeL": mean ROUGE-L F, "mcq_acc": mean MCQ} over the forget set's memory rows
    (only those with an id in `ids`, when given): what the robustness tables compare. A
    relearning attack is evaluated on the facts it did not train on; its "before" must be the
    same facts (`ids` = the attacked run's ids), not the whole forget set."""
    out = {}
    for task in ("image_memory", "text_memory"):
        sel = [r for r in rows if r["set"] == "forget" and r["task"] == task and (ids is None or r["id"] in ids)]
        rl = [r["rougeL_f"] for r in sel if r.get("rougeL_f") is not None]
        mc = [r["mcq_correct"] for r in sel if r.get("mcq_correct") is not None]
        out[task] = {"rougeL": round(fmean(rl), 6) if rl else None, "mcq_acc": round(fmean(mc), 6) if mc else None}
    return out
