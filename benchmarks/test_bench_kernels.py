"""Kernels (CPU): the C++/OpenMP backend against baselines measured in the same run.

    .venv/bin/python -m pytest benchmarks/test_bench_kernels.py --benchmark-enable -s
    SMFA_BENCH_N=16777216 ...      # fewer elements (default 64M = 64 * 2**20 bf16)
    SMFA_BENCH_ASSERT=1 ...        # fail when a goal below is missed (off by default: a busy
                                   # shared machine makes absolute figures noisy)

Workload: f, a = 64M bf16 each, no base, k = 1. `sculpt_tensor(..., backend="cpu")` is a
norm pass over f and a (4 bytes/element read) plus the fused pass (4 read + 2 written):
10 bytes moved per element. Baselines, timed here in the same process:
  - copy:  torch `dst.copy_(src)` of 5 bytes/element into a preallocated dst (10 bytes moved)
  - clone: `src.clone()` of the same 5 bytes/element (a fresh destination, so it pays the
           page faults that sculpt_tensor's freshly allocated output pays too)
  - naive: the same maths as a plain torch expression (fp32/fp64 temporaries)
Goals: sculpt_tensor >= 0.7x copy bandwidth and >= 50x naive torch. Ratios land in each
benchmark's extra_info and are printed (run with -s to see them).
"""

from __future__ import annotations

import math
import os
import time

import pytest
import torch

import smfa_core
from smfa_core.backends import reference

try:
    from smfa_core.backends import cpu as cpu_backend

    _OK, _WHY = cpu_backend.available()
except Exception as exc:  # pragma: no cover - depends on the build
    _OK, _WHY = False, str(exc)

pytestmark = pytest.mark.skipif(not _OK, reason=f"cpu backend not built: {_WHY}")

N = int(os.environ.get("SMFA_BENCH_N", 64 * 2**20))
BYTES_PER_ELEM = 10  # sculpt_tensor on bf16 f, a: 2+2 (norms) + 2+2+2 (fused pass)
ASSERT_GOALS = os.environ.get("SMFA_BENCH_ASSERT") == "1"
GOAL_VS_COPY = 0.7
GOAL_VS_NAIVE = 50.0


def best_of(fn, reps: int) -> float:
    """Minimum wall time of `reps` calls (the least disturbed run on a shared machine)."""
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def naive_sculpt(f: torch.Tensor, a: torch.Tensor, k: float, eps: float = 1e-8) -> torch.Tensor:
    """The contract written the obvious way in torch (what a user would write first)."""
    f32, a32 = f.float(), a.float()
    nf = f32.double().pow(2).sum().sqrt()
    na = a32.double().pow(2).sum().sqrt()
    t = (k * nf / (na + eps)).float()
    conflict = ((f32 > 0) & (a32 < 0)) | ((f32 < 0) & (a32 > 0))
    dominant = t * a32.abs() < f32.abs()
    return torch.where(conflict & dominant, torch.zeros((), dtype=torch.float32), f32).to(f.dtype)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    f = (torch.randn(N, generator=g) * 0.02).to(torch.bfloat16)
    a = (torch.randn(N, generator=g) * 0.01).to(torch.bfloat16)
    return f, a


@pytest.fixture(scope="module")
def baselines(data):
    """Seconds per call of each baseline, timed once per run (the ratios' denominators)."""
    f, a = data
    src = torch.ones(N * BYTES_PER_ELEM // 2, dtype=torch.uint8)
    dst = torch.empty_like(src)
    return {
        "copy": best_of(lambda: dst.copy_(src), 5),
        "clone": best_of(lambda: src.clone(), 5),
        "naive": best_of(lambda: naive_sculpt(f, a, 1.0), 2),
    }


def _seconds(benchmark, fn, reps: int) -> float:
    """Best time from pytest-benchmark when enabled; else a quick best-of timing."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        return stats.stats.min
    return best_of(fn, reps)


def _report(benchmark, name: str, seconds: float, nbytes: float, baselines: dict) -> dict:
    info = {
        "elements": N,
        "seconds": seconds,
        "GB_per_s": nbytes / seconds / 1e9,
        "Melem_per_s": N / seconds / 1e6,
        "copy_GB_per_s": N * BYTES_PER_ELEM / baselines["copy"] / 1e9,
        "vs_copy_same_bytes": (nbytes / seconds) / (N * BYTES_PER_ELEM / baselines["copy"]),
        "vs_clone_same_bytes": (nbytes / seconds) / (N * BYTES_PER_ELEM / baselines["clone"]),
        "vs_naive_torch": baselines["naive"] / seconds,
        "threads": torch.get_num_threads(),
    }
    benchmark.extra_info.update(info)
    print(f"\n[kernels-cpu] {name}: {info['Melem_per_s']:.0f} Melem/s, {info['GB_per_s']:.2f} GB/s; "
          f"x{info['vs_copy_same_bytes']:.2f} of copy ({info['copy_GB_per_s']:.2f} GB/s), "
          f"x{info['vs_clone_same_bytes']:.2f} of clone, x{info['vs_naive_torch']:.1f} of naive torch "
          f"({N / baselines['naive'] / 1e6:.0f} Melem/s)")
    return info


# ------------------------------------------------------------------ baselines

def test_baseline_copy_same_bytes(benchmark):
    src = torch.ones(N * BYTES_PER_ELEM // 2, dtype=torch.uint8)
    dst = torch.empty_like(src)
    benchmark.pedantic(dst.copy_, args=(src,), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["bytes_moved"] = 2 * src.numel()


def test_baseline_naive_torch(benchmark, data):
    f, a = data
    out = benchmark.pedantic(naive_sculpt, args=(f, a, 1.0), rounds=2, iterations=1)
    assert out.shape == f.shape


# ------------------------------------------------------------------ the cpu backend

def test_sculpt_tensor_cpu(benchmark, data, baselines):
    """The goal workload: norms + fused sculpt into a reused output (`out=`), the way the
    streaming engine and an in-place merge call it."""
    f, a = data
    buf = torch.empty_like(f)

    def run():
        return smfa_core.sculpt_tensor(f, a, 1.0, backend="cpu", out=buf)

    out, stats = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert out.dtype == torch.bfloat16 and stats.numel == N
    info = _report(benchmark, "sculpt_tensor", _seconds(benchmark, run, 3), N * BYTES_PER_ELEM,
                   baselines)
    if ASSERT_GOALS:
        assert info["vs_copy_same_bytes"] >= GOAL_VS_COPY, info
        assert info["vs_naive_torch"] >= GOAL_VS_NAIVE, info


def test_sculpt_tensor_fresh_output_cpu(benchmark, data, baselines):
    """sculpt_tensor allocating its output: adds the page faults of a fresh 128 MB tensor
    (compare with the `clone` ratio, which pays the same)."""
    f, a = data

    def run():
        return smfa_core.sculpt_tensor(f, a, 1.0, backend="cpu")

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    _report(benchmark, "sculpt_tensor (fresh output)", _seconds(benchmark, run, 3), N * BYTES_PER_ELEM,
            baselines)


def test_kernels_preallocated_cpu(benchmark, data, baselines):
    """The same three kernel calls into a reused output buffer (how the streaming engine
    calls them): the page faults of a fresh 128 MB output are not counted."""
    f, a = data
    out = torch.empty_like(f)

    def run():
        ssf = math.fsum(cpu_backend.sumsq_blocks(f).tolist())
        ssa = math.fsum(cpu_backend.sumsq_blocks(a).tolist())
        t = float(torch.tensor(math.sqrt(ssf) / (math.sqrt(ssa) + 1e-8)).float())
        return cpu_backend.sculpt_chunk(f, None, a, None, t, 3, None, out, None)

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    info = _report(benchmark, "sumsq x2 + sculpt_chunk (reused out)", _seconds(benchmark, run, 3),
                   N * BYTES_PER_ELEM, baselines)
    if ASSERT_GOALS:
        assert info["vs_copy_same_bytes"] >= GOAL_VS_COPY, info


def test_sumsq_blocks_cpu(benchmark, data, baselines):
    f, _ = data
    fn = cpu_backend.sumsq_blocks
    benchmark.pedantic(fn, args=(f,), rounds=5, iterations=1, warmup_rounds=1)
    _report(benchmark, "sumsq_blocks", _seconds(benchmark, lambda: fn(f), 3), N * 2, baselines)


@pytest.mark.parametrize("with_mask", [False, True], ids=["out", "out+mask"])
def test_sculpt_chunk_cpu(benchmark, data, baselines, with_mask):
    f, a = data
    out = torch.empty_like(f)
    mask = torch.empty((N + 7) // 8, dtype=torch.uint8) if with_mask else None

    def run():
        return cpu_backend.sculpt_chunk(f, None, a, None, 1.0, 3, None, out, mask)

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    nbytes = N * 6 + (N / 8 if with_mask else 0)
    _report(benchmark, f"sculpt_chunk ({'out+mask' if with_mask else 'out'})",
            _seconds(benchmark, run, 3), nbytes, baselines)


def test_sweep_counts_cpu(benchmark, data, baselines):
    f, a = data
    ts = torch.linspace(0.05, 5.0, 32)

    def run():
        return cpu_backend.sweep_counts(f, None, a, None, ts)

    counts = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert counts.numel() == 33
    _report(benchmark, "sweep_counts (32 t)", _seconds(benchmark, run, 2), N * 4, baselines)


def test_same_bits_as_reference_on_a_slice(data):
    """A guard that the benchmarked configuration is the exact one (first 1M elements)."""
    f, a = data
    n = min(N, 2**20)
    fs, as_ = f[:n], a[:n]
    outs = [torch.empty_like(fs) for _ in range(2)]
    c0 = cpu_backend.sculpt_chunk(fs, None, as_, None, 0.5, 3, None, outs[0], None)
    c1 = reference.sculpt_chunk(fs, None, as_, None, 0.5, 3, None, outs[1], None)
    assert torch.equal(c0, c1) and torch.equal(outs[0].view(torch.int16), outs[1].view(torch.int16))
