"""`smfa bench build --profiles 1000` must stay under a minute (issue 5)."""

from __future__ import annotations

import shutil


def test_bench_build_1000_profiles(benchmark, tmp_path):
    from smfa_eval.build import build

    out = tmp_path / "bench"

    def run() -> None:
        build(out, profiles=1000, seed=0, overwrite=True)

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert sum(1 for _ in (out / "images").rglob("*.png")) == 4000
    if benchmark.stats is not None:  # None under --benchmark-disable
        assert benchmark.stats.stats.max < 60.0
    shutil.rmtree(out)
