"""A judge that raises in score() or answers the wrong number of results costs only its rows:
each gets a judge_error, the eval finishes, and the next run re-tries exactly those rows."""

from __future__ import annotations

import json

import pytest

from smfa_eval.evaluate import run_eval
from smfa_eval.judges import JudgeResult
from smfa_eval.judges.heuristic import HeuristicJudge


class Flaky:
    """Fails on its first `fail` calls (raising, or one result short), then scores like the
    heuristic judge."""

    name = "flaky"

    def __init__(self, fail: int, how: str) -> None:
        self.fail, self.how, self.calls, self.scored = fail, how, 0, 0
        self._inner = HeuristicJudge()

    def score(self, requests):
        self.calls += 1
        if self.calls <= self.fail:
            if self.how == "raise":
                raise ConnectionError("judge API down")
            return [JudgeResult(fact=5.0, meaningful=5.0)] * (len(requests) - 1)
        self.scored += len(requests)
        return self._inner.score(requests)


@pytest.mark.parametrize("how, error", [("raise", "ConnectionError: judge API down"),
                                        ("short", "returned 3 results for 4 requests")])
def test_judge_failures_become_per_row_judge_errors_retried_on_resume(bench_dir, tmp_path, echo_generator, how,
                                                                     error):
    out = tmp_path / "run"
    kw = dict(judge_name="flaky", model=None, limit=2, batch_size=4, progress=False)
    judge = Flaky(fail=1, how=how)
    s = run_eval(bench_dir, "forget05", out, judge=judge, generator=echo_generator(), **kw)
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    failed = [r for r in rows if r["judge_error"]]
    assert len(failed) == 4 == s["judge_failed"]  # the first batch only
    assert all(f"judge 'flaky' failed: {error}" in r["judge_error"] and r["fact"] is None for r in failed)
    again = Flaky(fail=0, how=how)
    s2 = run_eval(bench_dir, "forget05", out, judge=again, generator=echo_generator(), **kw)
    assert again.scored == 4 and s2["judge_failed"] == 0  # exactly the failed rows were judged again
