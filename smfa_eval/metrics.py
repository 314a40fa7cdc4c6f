"""ROUGE-L through `rouge-score` (stemmer on). The tables show the F-measure; recall is kept
per item too (some unlearning papers report recall)."""

from __future__ import annotations

from functools import lru_cache

from rouge_score import rouge_scorer


@lru_cache(maxsize=1)
def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> tuple[float, float]:
    """(F-measure, recall) of ROUGE-L of `prediction` against `reference`."""
    s = _scorer().score(reference, prediction)["rougeL"]
    return s.fmeasure, s.recall
