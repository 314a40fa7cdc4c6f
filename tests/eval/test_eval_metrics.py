"""ROUGE-L matches rouge-score; the heuristic judge's documented behaviour."""

from __future__ import annotations

import pytest
from rouge_score import rouge_scorer

from smfa_eval.judges import JudgeRequest
from smfa_eval.judges.heuristic import HeuristicJudge, fact_score, meaningful_score
from smfa_eval.metrics import rouge_l

PAIRS = [
    ("This individual was born in Utrecht, Netherlands.", "This individual was born in Utrecht, Netherlands."),
    ("The person lives in Wellington.", "This person currently resides in Wellington, New Zealand."),
    ("I'm not the right source for that.", "This person was born in Zurich, Switzerland."),
    ("running runners ran", "The runner runs."),
    ("", "Something."),
    ("is is is is", "This is it."),
]


@pytest.mark.parametrize("pred, ref", PAIRS)
def test_rouge_l_equals_rouge_score(pred, ref):
    s = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(ref, pred)["rougeL"]
    assert rouge_l(pred, ref) == (s.fmeasure, s.recall)


def test_rouge_uses_stemmer():
    f, _ = rouge_l("runs", "running")
    assert f == 1.0


def test_heuristic_fact_score():
    ref, keys = "This person was born in Zurich, Switzerland.", ["Zurich, Switzerland"]
    assert fact_score("Born in Zurich, Switzerland.", ref, keys) == 10.0
    assert fact_score("They were born in Zurich.", ref, keys) == 5.0
    assert fact_score("Born in Lviv, Ukraine.", ref, keys) == 0.0
    assert fact_score("I don't know, maybe Zurich, Switzerland.", ref, keys) == 0.0  # refusal
    assert fact_score("$65000 a year", "x", ["$65,000"]) == 10.0
    assert fact_score("No, the person is not wearing glasses.", "", ["no"]) == 10.0
    assert fact_score("Yes.", "", ["no"]) == 0.0


def test_heuristic_meaningful_score_separates_degenerate_outputs():
    fluent = ["This individual was born in Utrecht, Netherlands.", "I'm not the right source for that.",
              "This person lives in Wellington, New Zealand."]
    broken = ["The is is is is is is is", "1 at. leiket. 1 life. also, 5.0. leiket.", "", "20 100.", "xq zzv kkp wrr"]
    assert min(meaningful_score(t) for t in fluent) >= 9.0
    assert max(meaningful_score(t) for t in broken) < 4.0
    assert meaningful_score("This individual was born in 幼稚园 city.") < meaningful_score("This individual was born in Lyon city.")


def test_heuristic_judge_is_deterministic():
    reqs = [JudgeRequest("Q?", "This person is Rosa Winters.", p, ("Rosa Winters",)) for p in ("Rosa Winters.", "is is")]
    a, b = HeuristicJudge().score(reqs), HeuristicJudge().score(reqs)
    assert a == b and a[0].fact == 10.0 and a[1].fact == 0.0 and all(r.error is None for r in a)
