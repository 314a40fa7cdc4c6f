"""The GPU kernel backends (`triton`, `cuda`) against the `reference` backend: same bits.

Parametrised over (backend, device): triton on CPU tensors through the interpreter when
TRITON_INTERPRET=1 (tests/conftest.py sets it on machines without a GPU), triton and cuda on
CUDA tensors when a GPU is there, and always `cuda-emulated`: the CUDA kernels' own source
compiled for the host against tests/cuda_emu (tests/cuda_emulated.py), so their indexing, tails,
reduction order and rounding are checked on every machine. The reference always runs on CPU
copies: it is the spec.
The interpreter costs ~1.4 ms per program and more per op, so the grids here are chosen to
cover every (dtype, size, mode, t, option) value without their full product.
"""

from __future__ import annotations

import importlib
import os

import cuda_emulated
import pytest
import torch
from kernel_utils import (
    KINDS,
    T_VALUES,
    assert_bits_equal,
    f32_exact,
    make_inputs,
    make_pair,
    make_weight,
    order_sensitive,
    rows_reversed,
    tree_sensitive,
)

from smfa_core.backends import reference as ref

BF16, F16, F32 = torch.bfloat16, torch.float16, torch.float32
SIZES = (1, 7, 257, 65537, 2 * 65536 + 3)
TS = [f32_exact(t) for t in T_VALUES]
PAIRS = [(BF16, BF16), (F16, F16), (F32, F32), (BF16, F32), (F16, BF16)]
INTERPRET = os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def _backend_params():
    params = []
    for name in ("triton", "cuda"):
        try:
            mod = importlib.import_module(f"smfa_core.backends.{name}")
            ok, why = mod.available()
        except Exception as exc:  # pragma: no cover - depends on the build
            mod, ok, why = None, False, f"failed to load: {exc}"
        if name == "triton":
            dev = "cpu" if INTERPRET else "cuda"
        else:
            dev = "cuda"
        if ok and dev == "cuda" and not torch.cuda.is_available():
            ok, why = False, "no CUDA device"
        marks = () if ok else (pytest.mark.skip(reason=f"{name} backend unavailable: {why}"),)
        params.append(pytest.param((mod, dev), id=f"{name}-{dev}", marks=marks))
    ok, why = cuda_emulated.available()
    marks = () if ok else (pytest.mark.skip(reason=f"cuda-emulated unavailable: {why}"),)
    params.append(pytest.param((cuda_emulated, "cpu"), id="cuda-emulated", marks=marks))
    return params


@pytest.fixture(params=_backend_params())
def be(request):
    return request.param


def _name(d) -> str:
    return str(d).removeprefix("torch.")


def _dev(x, device):
    return None if x is None else x.to(device)


def _assert_eq(actual, expected, name, device):
    if device != "cpu" and actual.is_floating_point():
        # NaN payloads of fp32 arithmetic differ between CPU and GPU hardware; every
        # other bit must match
        nan = torch.isnan(actual.cpu().float()) & torch.isnan(expected.float())
        if bool(nan.any()):
            actual, expected = actual.cpu().clone(), expected.clone()
            actual[nan] = 0
            expected[nan] = 0
    assert_bits_equal(actual, expected, name)


def run_both(be, f, fb, a, ab, t, mode, w, out_dtype, with_mask):
    """Run backend and reference; assert out, mask and counts are equal; return the counts."""
    mod, device = be
    n = f.numel()
    out = torch.full((n,), 7.0, dtype=out_dtype, device=device)  # garbage: unwritten fails
    mask = torch.full(((n + 7) // 8,), 0xA5, dtype=torch.uint8, device=device) if with_mask else None
    counts = mod.sculpt_chunk(_dev(f, device), _dev(fb, device), _dev(a, device), _dev(ab, device), t,
                              mode, _dev(w, device), out, mask)
    rout = torch.full((n,), 7.0, dtype=out_dtype)
    rmask = torch.full(((n + 7) // 8,), 0xA5, dtype=torch.uint8) if with_mask else None
    rcounts = ref.sculpt_chunk(f, fb, a, ab, t, mode, w, rout, rmask)
    tag = (f"n={n} mode={mode} t={t!r} f={_name(f.dtype)} a={_name(a.dtype)} out={_name(out_dtype)} "
           f"base={fb is not None}/{ab is not None} w={None if w is None else _name(w.dtype)}")
    assert counts.device.type == device, f"counts on {counts.device}, expected {device}"
    assert_bits_equal(counts.cpu(), rcounts, f"counts [{tag}]")
    _assert_eq(out, rout, f"out [{tag}]", device)
    if with_mask:
        assert_bits_equal(mask.cpu(), rmask, f"mask [{tag}]")
    return rcounts


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("f_dtype,a_dtype", PAIRS, ids=[f"{_name(x)}-{_name(y)}" for x, y in PAIRS])
def test_sculpt_chunk_dtypes_sizes_modes(be, f_dtype, a_dtype, n):
    k = SIZES.index(n) + PAIRS.index((f_dtype, a_dtype))
    # edge values at every size that is cheap; the large sizes test blocking and tails
    f, a = make_inputs(f_dtype, n, "mixed" if n < 1000 else "random", seed=k, a_dtype=a_dtype)
    for mode in (0, 1, 2, 3):  # each mode meets each t over the sizes; options rotate
        i = mode + k
        t = TS[i % 4]
        fb = ab = w = None
        if i % 2:
            f2, fb = make_pair(f, seed=i)
        else:
            f2 = f
        if i % 3 == 1:
            a2, ab = make_pair(a, seed=i + 1)
        else:
            a2 = a
        if i % 4 in (1, 2):
            w = make_weight((BF16, F16, F32)[i % 3], n, seed=i)
        out_dtype = w.dtype if w is not None else f_dtype
        run_both(be, f2, fb, a2, ab, t, mode, w, out_dtype, with_mask=i % 4 != 3)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", (BF16, F16, F32), ids=_name)
def test_sculpt_chunk_edge_kinds(be, dtype, kind):
    n = 4099
    f, a = make_inputs(dtype, n, kind, seed=3)
    for mode in (0, 1, 2):
        run_both(be, f, None, a, None, TS[(mode + len(kind)) % 4], mode, None, dtype, with_mask=True)
    w = make_weight(dtype, n, seed=5)
    for t in TS:
        run_both(be, f, None, a, None, t, 3, w if t == TS[2] else None, dtype, with_mask=True)


@pytest.mark.parametrize("out_dtype", (BF16, F16, F32), ids=_name)
@pytest.mark.parametrize("f_dtype", (BF16, F16, F32), ids=_name)
def test_sculpt_chunk_merge_into_each_dtype(be, f_dtype, out_dtype):
    n = 65537
    f, a = make_inputs(f_dtype, n, "random", seed=11)
    f, fb = make_pair(f, seed=2)
    w = make_weight(out_dtype, n, seed=4)
    run_both(be, f, fb, a, None, TS[2], 3, w, out_dtype, with_mask=True)


@pytest.mark.parametrize("dtype", (BF16, F16, F32), ids=_name)
def test_sculpt_chunk_non_finite_and_rounding(be, dtype):
    """NaN/inf pass through; w + f rounds to nearest even, overflows to inf (bits as torch)."""
    vals = [float("nan"), float("inf"), -float("inf"), 3e38, -3e38, 1e-45, -0.0, 0.0, 65504.0, 65520.0,
            1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-11, -(1.0 + 3 * 2**-11)]
    n = 8 * len(vals)
    g = torch.Generator().manual_seed(0)
    f = torch.tensor(vals * 8, dtype=F32)[torch.randperm(n, generator=g)]
    a = torch.tensor(vals * 8, dtype=F32)[torch.randperm(n, generator=g)]
    w = torch.tensor(vals * 8, dtype=F32)[torch.randperm(n, generator=g)]
    for mode in (0, 3):
        for out_dtype in (BF16, F16, F32):
            run_both(be, f, None, a.to(dtype), None, TS[2], mode, None, out_dtype, with_mask=True)
            run_both(be, f.to(dtype), None, a, None, TS[1], mode, w, out_dtype, with_mask=False)


def test_sculpt_chunk_counts_and_mask_by_hand(be):
    f = torch.tensor([1.0, -1.0, 2.0, 0.0, -0.0, 3.0, -3.0, 0.5, 4.0], dtype=F32)
    a = torch.tensor([-1.0, 1.0, 1.0, -1.0, 1.0, -0.5, 0.5, -1.0, -0.0], dtype=F32)
    counts = run_both(be, f, None, a, None, 1.0, 3, None, F32, with_mask=True)
    assert counts.tolist() == [5, 2, 0]  # conflicts: 0, 1, 5, 6, 7 (none at zeros); masked: 5, 6


def test_sculpt_chunk_unaligned_views_and_out_aliases_w(be):
    mod, device = be
    n = 65537
    f, a = make_inputs(BF16, n + 1, "random", seed=21)
    w = make_weight(BF16, n + 1, seed=22)
    fu, au, wu = f[1:], a[1:], w[1:]  # storage offset 1: 2-byte aligned only
    run_both(be, fu, None, au, None, TS[2], 3, wu, BF16, with_mask=True)
    # in-place merge: out is w itself
    wd = w.clone().to(device)  # .to(cpu) would alias w itself
    counts = mod.sculpt_chunk(f.to(device), None, a.to(device), None, TS[2], 3, wd, wd, None)
    rout = torch.empty_like(w)
    rcounts = ref.sculpt_chunk(f, None, a, None, TS[2], 3, w, rout, None)
    assert_bits_equal(counts.cpu(), rcounts, "counts (out aliases w)")
    assert_bits_equal(wd.cpu(), rout, "out (out aliases w)")


def test_sculpt_chunk_empty(be):
    mod, device = be
    e = torch.empty(0, dtype=F32, device=device)
    out = torch.empty(0, dtype=F32, device=device)
    assert mod.sculpt_chunk(e, None, e, None, 1.0, 3, None, out, None).tolist() == [0, 0, 0]
    assert mod.sumsq_blocks(e, None).numel() == 0
    assert mod.sweep_counts(e, None, e, None, torch.tensor([1.0])).tolist() == [0, 0]


@pytest.mark.parametrize("with_base", (False, True), ids=("delta", "pair"))
@pytest.mark.parametrize("dtype", (BF16, F16, F32), ids=_name)
def test_sumsq_blocks_bits(be, dtype, with_base):
    mod, device = be
    for n in SIZES:
        x, _ = make_inputs(dtype, n, "mixed" if n < 1000 else "random", seed=n)
        xb = None
        if with_base:
            x, xb = make_pair(x, seed=n)
        got = mod.sumsq_blocks(x.to(device), _dev(xb, device))
        assert got.device.type == device and got.dtype == torch.float64
        assert_bits_equal(got.cpu(), ref.sumsq_blocks(x, xb), f"sumsq n={n} {_name(dtype)} base={with_base}")


@pytest.mark.parametrize("dtype", (BF16, F16, F32), ids=_name)
def test_sumsq_blocks_halving_tree(be, dtype):
    mod, device = be
    x, first = tree_sensitive(dtype)
    got = mod.sumsq_blocks(x.to(device), None).cpu()
    assert got[0].item() == first, f"{got[0].item()!r} != {first!r}: lanes combined in another order"
    assert_bits_equal(got, ref.sumsq_blocks(x), f"sumsq tree {_name(dtype)}")


@pytest.mark.parametrize("dtype", (BF16, F16, F32), ids=_name)
def test_sumsq_blocks_order_matters_and_is_kept(be, dtype):
    """kernel_utils.order_sensitive values: another row order gives other bits (asserted).
    The last block has 31 complete rows and a partial one (CUDA: one raw 16-row group, then
    the rest)."""
    mod, device = be
    n = 65536 + 256 * 31 + 5
    x = order_sensitive(dtype, n)
    exp = ref.sumsq_blocks(x)
    assert ref.sumsq_blocks(rows_reversed(x))[0].item() != exp[0].item(), "test values are order-insensitive"
    assert_bits_equal(mod.sumsq_blocks(x.to(device), None).cpu(), exp, f"sumsq wide range {_name(dtype)}")


@pytest.mark.parametrize("kind", ("random", "mixed", "tiny", "huge"))
@pytest.mark.parametrize("f_dtype,a_dtype", PAIRS, ids=[f"{_name(x)}-{_name(y)}" for x, y in PAIRS])
def test_sweep_counts(be, f_dtype, a_dtype, kind):
    mod, device = be
    n = 65537
    f, a = make_inputs(f_dtype, n, kind, seed=5, a_dtype=a_dtype)
    fb = ab = None
    if kind == "random":
        f, fb = make_pair(f, seed=1)
        a, ab = make_pair(a, seed=2)
    ts = torch.tensor([0.0, 0.37, 1.0, 1e30, 2.5, 1e-30, float("inf")], dtype=torch.float64)
    got = mod.sweep_counts(f.to(device), _dev(fb, device), a.to(device), _dev(ab, device), ts.to(device))
    exp = ref.sweep_counts(f, fb, a, ab, ts)
    assert got.device.type == "cpu"
    assert_bits_equal(got, exp, f"sweep {kind} {_name(f_dtype)}/{_name(a_dtype)}")


def test_sweep_counts_many_ts_and_none(be):
    mod, device = be
    n = 4099
    f, a = make_inputs(F32, n, "random", seed=9)
    ts = torch.linspace(0, 3, 70)  # more than one CUDA launch's worth (32 per launch)
    assert_bits_equal(mod.sweep_counts(f.to(device), None, a.to(device), None, ts.to(device)),
                      ref.sweep_counts(f, None, a, None, ts), "sweep 70 ts")
    empty = torch.empty(0)
    assert_bits_equal(mod.sweep_counts(f.to(device), None, a.to(device), None, empty.to(device)),
                      ref.sweep_counts(f, None, a, None, empty), "sweep no ts")


def test_sweep_matches_sculpt_counts(be):
    mod, device = be
    n = 65537
    f, a = make_inputs(BF16, n, "mixed", seed=13)
    sweep = mod.sweep_counts(f.to(device), None, a.to(device), None, torch.tensor(TS, device=device))
    for j, t in enumerate(TS):
        out = torch.empty(n, dtype=BF16, device=device)
        c = mod.sculpt_chunk(f.to(device), None, a.to(device), None, t, 3, None, out, None).cpu()
        assert c[0].item() == sweep[0].item() and c[1].item() == sweep[1 + j].item()


def test_bad_inputs(be):
    mod, device = be
    f = torch.zeros(16, device=device)
    with pytest.raises((ValueError, RuntimeError)):
        mod.sculpt_chunk(f, None, f, None, 1.0, 3, None, torch.empty(16, device=device),
                         torch.empty(3, dtype=torch.uint8, device=device))  # mask of 2 bytes wanted
    with pytest.raises((ValueError, RuntimeError)):
        mod.sculpt_chunk(f, None, f[:8], None, 1.0, 3, None, torch.empty(16, device=device), None)
    with pytest.raises((ValueError, RuntimeError)):
        mod.sculpt_chunk(f, None, f, None, 1.0, 7, None, torch.empty(16, device=device), None)
    with pytest.raises((TypeError, RuntimeError)):
        mod.sumsq_blocks(torch.zeros(4, dtype=torch.float64, device=device), None)
