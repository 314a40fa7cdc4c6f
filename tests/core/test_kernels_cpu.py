"""The `cpu` backend (csrc/*_cpu.cpp) against the `reference` backend: same bits.

Grids: input dtypes (f, a in bf16/fp16/fp32, mixed) x odd sizes x modes x t, edge-value
kinds (signed zeros, a = -f, zero anchor, |f| == |a|, underflowing tiny values, huge values
where t*|a| overflows), (x, x_base) pairs, a base weight w of each dtype, the packed mask.
Both vector paths (AVX2, chosen at run time where the CPU has it, and the portable one that
SMFA_CPU_ISA=portable forces, run in a subprocess) give the same bits.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import subprocess
import sys
import types

import pytest
import torch
from kernel_utils import (
    DTYPES,
    KINDS,
    MODES,
    ODD_SIZES,
    T_VALUES,
    assert_bits_equal,
    f32_exact,
    make_inputs,
    make_pair,
    make_weight,
    order_sensitive,
    rows_reversed,
    single_threaded,
    tree_sensitive,
)

from smfa_core.backends import reference as _reference

try:
    from smfa_core.backends import cpu as cpu_backend

    _OK, _WHY = cpu_backend.available()
except Exception as exc:  # pragma: no cover - depends on the build
    _OK, _WHY = False, str(exc)

pytestmark = pytest.mark.skipif(not _OK, reason=f"cpu backend not built: {_WHY}")

# The reference's many small torch ops run much faster on one thread on a small busy machine.
ref = types.SimpleNamespace(**{op: single_threaded(getattr(_reference, op))
                               for op in ("sumsq_blocks", "sculpt_chunk", "sweep_counts")})

DTYPE_PAIRS = list(itertools.product(DTYPES, DTYPES))
TS = [f32_exact(t) for t in T_VALUES]


def _name(d: torch.dtype) -> str:
    return str(d).removeprefix("torch.")


def run_both(f, fb, a, ab, t, mode, w, out_dtype, with_mask):
    """Run cpu and reference on the same inputs; assert out, mask and counts are equal."""
    n = f.numel()
    outs, masks, counts = [], [], []
    for be in (cpu_backend, ref):
        # fill with garbage so that an element left unwritten cannot pass
        out = torch.full((n,), 7.0, dtype=out_dtype)
        mask = torch.full(((n + 7) // 8,), 0xA5, dtype=torch.uint8) if with_mask else None
        counts.append(be.sculpt_chunk(f, fb, a, ab, t, mode, w, out, mask))
        outs.append(out)
        masks.append(mask)
    tag = f"n={n} mode={mode} t={t!r} f={_name(f.dtype)} a={_name(a.dtype)} out={_name(out_dtype)} " \
          f"base={fb is not None}/{ab is not None} w={w is not None}"
    assert_bits_equal(counts[0], counts[1], f"counts [{tag}]")
    assert_bits_equal(outs[0], outs[1], f"out [{tag}]")
    if with_mask:
        assert_bits_equal(masks[0], masks[1], f"mask [{tag}]")
    return counts[0]


# ------------------------------------------------------------------ sculpt_chunk

@pytest.mark.parametrize("n", ODD_SIZES)
@pytest.mark.parametrize("f_dtype,a_dtype", DTYPE_PAIRS, ids=lambda d: _name(d))
def test_sculpt_chunk_dtypes_sizes(f_dtype, a_dtype, n):
    """Every mode x t on mixed edge values; out dtype, w and mask rotate with the case."""
    f, a = make_inputs(f_dtype, n, "mixed", seed=n % 97, a_dtype=a_dtype)
    case = DTYPE_PAIRS.index((f_dtype, a_dtype)) + ODD_SIZES.index(n)
    out_dtype = DTYPES[case % 3]
    w = make_weight(out_dtype, n, seed=case) if case % 2 else None
    grid = list(itertools.product(MODES, TS))
    if n > 4096:  # large sizes: one t per mode, rotated so that the 9 dtype pairs cover the grid
        grid = [(mode, TS[(mode + case) % len(TS)]) for mode in MODES]
    for i, (mode, t) in enumerate(grid):
        od = out_dtype if (w is not None or i % 2) else f_dtype  # w and out share a dtype
        run_both(f, None, a, None, t, mode, w, od, with_mask=i % 3 != 0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=_name)
def test_sculpt_chunk_edge_kinds(dtype, kind):
    """Each edge kind alone, with and without (x, x_base) pairs, w and mask."""
    n = 8191
    f, a = make_inputs(dtype, n, kind, seed=3)
    fp = make_pair(f, seed=1)
    ap = make_pair(a, seed=2)
    w = make_weight(dtype, n, seed=5)
    for mode, t in itertools.product(MODES, TS):
        run_both(f, None, a, None, t, mode, None, dtype, with_mask=True)
        run_both(fp[0], fp[1], ap[0], ap[1], t, mode, w, dtype, with_mask=True)
    run_both(fp[0], fp[1], a, None, TS[1], 3, w, dtype, with_mask=False)
    run_both(f, None, ap[0], ap[1], TS[2], 3, None, dtype, with_mask=False)


@pytest.mark.parametrize("out_dtype", DTYPES, ids=_name)
@pytest.mark.parametrize("f_dtype", DTYPES, ids=_name)
def test_sculpt_chunk_merge_into_each_dtype(f_dtype, out_dtype):
    """out = round(w + sculpted) for every (delta dtype, weight dtype), incl. huge values."""
    n = 65537
    f, a = make_inputs(f_dtype, n, "mixed", seed=11)
    w = make_weight(out_dtype, n, seed=13)
    w[::101] = torch.finfo(out_dtype).max  # + a huge delta overflows to inf on rounding
    w[1::101] = -torch.finfo(out_dtype).max
    for mode, t in itertools.product(MODES, (TS[1], TS[2])):
        run_both(f, None, a, None, t, mode, w, out_dtype, with_mask=mode == 3)


def test_sculpt_chunk_counts_and_mask_by_hand():
    f = torch.tensor([1.0, -1.0, 2.0, -0.0, 0.0, 3.0, -3.0, 0.5, 4.0], dtype=torch.float32)
    a = torch.tensor([-1.0, 0.5, 1.0, -1.0, 1.0, -4.0, 1.0, -0.25, -3.0], dtype=torch.float32)
    out = torch.empty_like(f)
    mask = torch.empty(2, dtype=torch.uint8)
    counts = cpu_backend.sculpt_chunk(f, None, a, None, 1.0, 3, None, out, mask)
    # C at 0, 1, 5, 6, 7, 8 (signed zeros never conflict); R=|a|<|f| at 1, 2, 6, 7, 8
    assert counts.tolist() == [6, 4, 0]
    assert out.tolist() == [1.0, 0.0, 2.0, -0.0, 0.0, 3.0, 0.0, 0.0, 0.0]
    assert mask.tolist() == [0b11000010, 0b1]
    assert torch.equal(out[3:4].view(torch.int32), torch.tensor([-0.0]).view(torch.int32))


BF16_MAX, FP16_MAX = torch.finfo(torch.bfloat16).max, torch.finfo(torch.float16).max


NAN, INF = float("nan"), float("inf")
F32, BF16, FP16 = torch.float32, torch.bfloat16, torch.float16


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("f_dtype, out_dtype, w, f, nonfinite", [
    # no merge: NaN and +-Inf in f reach the output unmasked (mode none); bf16: the direct AVX2 path
    (F32, F32, None, [NAN, INF, -INF, 1.0, 2.0], 3),
    (BF16, BF16, None, [NAN, INF, 1.0], 2),
    # bf16 merge: max + 5e35 rounds back to max, max + 1e36 passes 0x7F7F8000 and rounds to Inf
    (F32, BF16, [BF16_MAX, BF16_MAX, -BF16_MAX, 1.0], [5e35, 1e36, -1e36, NAN], 3),
    (BF16, BF16, [BF16_MAX, BF16_MAX, -BF16_MAX, 1.0], [5e35, 1e36, -1e36, NAN], 3),
    # fp16 merge: 65504 + 15 rounds to 65504, 65504 + 16 = 65520 is the tie that rounds to Inf
    (F32, FP16, [FP16_MAX, FP16_MAX, 1.0], [15.0, 16.0, 1.0], 1),
])
def test_sculpt_chunk_counts_nonfinite_outputs(backend, f_dtype, out_dtype, w, f, nonfinite):
    be = cpu_backend if backend == "cpu" else ref
    f = torch.tensor(f).to(f_dtype)
    wt = None if w is None else torch.tensor(w).to(out_dtype)
    out = torch.empty(f.numel(), dtype=out_dtype)
    counts = be.sculpt_chunk(f, None, torch.zeros_like(f), None, 1.0, 0, wt, out, None)
    assert counts.tolist() == [0, 0, nonfinite]
    assert int((~torch.isfinite(out)).sum()) == nonfinite


def test_sculpt_chunk_out_aliases_w():
    """In-place merge (out is w) gives what a separate output gives."""
    n = 65537
    f, a = make_inputs(torch.bfloat16, n, "random", seed=17)
    w = make_weight(torch.bfloat16, n, seed=19)
    expected = torch.empty_like(w)
    ce = ref.sculpt_chunk(f, None, a, None, 0.37, 3, w, expected)
    cc = cpu_backend.sculpt_chunk(f, None, a, None, 0.37, 3, w, w)
    assert_bits_equal(cc, ce, "counts")
    assert_bits_equal(w, expected, "out")


@pytest.mark.parametrize("dtype", DTYPES, ids=_name)
def test_sculpt_chunk_non_finite(dtype):
    """inf and NaN deltas (the engine rejects them earlier) still give torch's bits."""
    n = 1000
    f, a = make_inputs(dtype, n, "random", seed=23)
    specials = torch.tensor([float("inf"), -float("inf"), float("nan"), 1.0, -1.0, 0.0])
    f[::7] = specials[torch.arange(0, n, 7) % 6].to(dtype)
    a[::5] = specials[torch.arange(0, n, 5) % 6].to(dtype)
    w = make_weight(dtype, n, seed=29)
    for mode, t in itertools.product(MODES, TS):
        run_both(f, None, a, None, t, mode, None, dtype, with_mask=True)
        run_both(f, None, a, None, t, mode, w, dtype, with_mask=False)


# ------------------------------------------------------------------ sumsq_blocks

@pytest.mark.parametrize("n", ODD_SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=_name)
def test_sumsq_blocks_bits(dtype, n):
    for i, kind in enumerate(("random", "mixed", "huge")):
        x, _ = make_inputs(dtype, n, kind, seed=i)
        assert_bits_equal(cpu_backend.sumsq_blocks(x), ref.sumsq_blocks(x), f"sumsq {kind}")
    xp, xb = make_pair(x, seed=31)
    assert_bits_equal(cpu_backend.sumsq_blocks(xp, xb), ref.sumsq_blocks(xp, xb), "sumsq pair")


@pytest.mark.parametrize("dtype", DTYPES, ids=_name)
def test_sumsq_blocks_order_sensitive_values(dtype):
    """Values whose sums round (kernel_utils.order_sensitive): only the canonical order gives
    the reference's bits. Full blocks, and a last block of 31 rows + a partial one."""
    for n in (3 * 65536, 65536 + 256 * 31 + 5):
        x = order_sensitive(dtype, n, seed=n)
        exp = ref.sumsq_blocks(x)
        assert not torch.equal(ref.sumsq_blocks(rows_reversed(x)), exp), "test values are order-insensitive"
        assert_bits_equal(cpu_backend.sumsq_blocks(x), exp, f"sumsq order-sensitive n={n}")
        xp, xb = make_pair(x, seed=5)
        assert_bits_equal(cpu_backend.sumsq_blocks(xp, xb), ref.sumsq_blocks(xp, xb), f"sumsq pair n={n}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_name)
def test_sumsq_blocks_halving_tree(dtype):
    x, first = tree_sensitive(dtype)
    got = cpu_backend.sumsq_blocks(x)
    assert got[0].item() == first, f"{got[0].item()!r} != {first!r}: lanes combined in another order"
    assert_bits_equal(got, ref.sumsq_blocks(x), "sumsq tree")


def test_sumsq_blocks_thread_invariant():
    n = 9 * 65536 + 777
    x, _ = make_inputs(torch.float32, n, "random", seed=37)
    x = x * torch.logspace(-20, 20, n)  # a wide dynamic range makes the order visible
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(cpu_backend.sumsq_blocks(x))
    finally:
        torch.set_num_threads(before)
    assert_bits_equal(results[0], results[1], "sumsq 1 vs 2 threads")
    assert_bits_equal(results[0], ref.sumsq_blocks(x), "sumsq vs reference")


def test_sumsq_blocks_empty_and_order():
    assert cpu_backend.sumsq_blocks(torch.empty(0, dtype=torch.bfloat16)).shape == (0,)
    # lane order matters: 1e16 + 1 + ... differs from the naive sum; we must follow the tree
    x = torch.zeros(65536 + 3, dtype=torch.float32)
    x[0], x[256], x[1], x[65536 + 2] = 1e8, 1.0, 3.0, 2.0
    got = cpu_backend.sumsq_blocks(x)
    assert got.dtype == torch.float64
    assert got.tolist() == [1e16 + 1.0 + 9.0, 4.0]
    assert_bits_equal(got, ref.sumsq_blocks(x), "sumsq order")


# ------------------------------------------------------------------ sweep_counts

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("f_dtype,a_dtype", [(torch.bfloat16, torch.bfloat16),
                                             (torch.float16, torch.float32),
                                             (torch.float32, torch.bfloat16)], ids=_name)
def test_sweep_counts(f_dtype, a_dtype, kind):
    n = 20001
    f, a = make_inputs(f_dtype, n, kind, seed=41, a_dtype=a_dtype)
    ts = torch.tensor([0.0, 1e-3, 0.37, 0.5, 1.0, 2.0, 1e30, float("inf")], dtype=torch.float32)
    assert_bits_equal(cpu_backend.sweep_counts(f, None, a, None, ts),
                      ref.sweep_counts(f, None, a, None, ts), "sweep")
    fp, ap = make_pair(f, seed=43), make_pair(a, seed=47)
    assert_bits_equal(cpu_backend.sweep_counts(fp[0], fp[1], ap[0], ap[1], ts),
                      ref.sweep_counts(fp[0], fp[1], ap[0], ap[1], ts), "sweep pairs")
    ts64 = torch.tensor([0.1, 0.3333333333], dtype=torch.float64)  # rounded to fp32 like the reference
    assert_bits_equal(cpu_backend.sweep_counts(f, None, a, None, ts64),
                      ref.sweep_counts(f, None, a, None, ts64), "sweep fp64 ts")


def test_sweep_counts_matches_sculpt_counts():
    n = 3 * 65536 + 13
    f, a = make_inputs(torch.bfloat16, n, "mixed", seed=53)
    ts = torch.tensor(TS, dtype=torch.float32)
    sweep = cpu_backend.sweep_counts(f, None, a, None, ts).tolist()
    for i, t in enumerate(TS):
        c = cpu_backend.sculpt_chunk(f, None, a, None, t, 3, None, torch.empty_like(f)).tolist()
        assert [sweep[0], sweep[1 + i]] == c[:2]  # c[2]: non-finite outputs, not a sweep count
    assert cpu_backend.sweep_counts(f, None, a, None, torch.empty(0)).tolist() == [sweep[0]]


# ------------------------------------------------------------------ bad inputs

def _ok_args(n=16, dtype=torch.bfloat16):
    f = torch.randn(n).to(dtype)
    a = torch.randn(n).to(dtype)
    return f, a, torch.empty(n, dtype=dtype)


@pytest.mark.parametrize("case", [
    "f_noncontig", "a_noncontig", "out_noncontig", "int_f", "int_out", "numel_a", "numel_out",
    "numel_w", "base_dtype", "base_numel", "w_dtype", "mask_dtype", "mask_numel", "mode",
])
def test_sculpt_chunk_bad_inputs(case):
    f, a, out = _ok_args()
    kw = dict(f=f, f_base=None, a=a, a_base=None, t=1.0, mode=3, w=None, out=out, mask=None)
    bad = {
        "f_noncontig": dict(f=torch.randn(32).to(torch.bfloat16)[::2]),
        "a_noncontig": dict(a=torch.randn(16, 2).to(torch.bfloat16).t()[0]),
        "out_noncontig": dict(out=torch.empty(32, dtype=torch.bfloat16)[::2]),
        "int_f": dict(f=torch.ones(16, dtype=torch.int32)),
        "int_out": dict(out=torch.empty(16, dtype=torch.int16)),
        "numel_a": dict(a=torch.randn(15).to(torch.bfloat16)),
        "numel_out": dict(out=torch.empty(17, dtype=torch.bfloat16)),
        "numel_w": dict(w=torch.empty(17, dtype=torch.bfloat16)),
        "base_dtype": dict(f_base=torch.zeros(16, dtype=torch.float32)),
        "base_numel": dict(a_base=torch.zeros(8, dtype=torch.bfloat16)),
        "w_dtype": dict(w=torch.zeros(16, dtype=torch.float32)),
        "mask_dtype": dict(mask=torch.zeros(2, dtype=torch.int8)),
        "mask_numel": dict(mask=torch.zeros(3, dtype=torch.uint8)),
        "mode": dict(mode=4),
    }[case]
    kw.update(bad)
    with pytest.raises(RuntimeError, match="smfa::sculpt_chunk"):
        cpu_backend.sculpt_chunk(**kw)


def test_sumsq_and_sweep_bad_inputs():
    x = torch.randn(32).to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="contiguous"):
        cpu_backend.sumsq_blocks(x[::2])
    with pytest.raises(RuntimeError, match="bfloat16, float16 or float32"):
        cpu_backend.sumsq_blocks(torch.ones(4, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="x_base"):
        cpu_backend.sumsq_blocks(x, torch.zeros(31, dtype=torch.bfloat16))
    with pytest.raises(RuntimeError, match="x_base dtype"):
        cpu_backend.sumsq_blocks(x, torch.zeros(32, dtype=torch.float16))
    ts = torch.tensor([1.0])
    with pytest.raises(RuntimeError, match="smfa::sweep_counts"):
        cpu_backend.sweep_counts(x, None, x[:31], None, ts)
    with pytest.raises(RuntimeError, match="ts must be a float"):
        cpu_backend.sweep_counts(x, None, x, None, torch.tensor([1]))
    with pytest.raises(RuntimeError, match="contiguous"):
        cpu_backend.sweep_counts(x[::2], None, x[::2], None, ts)


def test_registered_for_cpu_and_module():
    from smfa_core import _ext

    assert "cpu" in _ext.C.built_backends()
    for op in ("sumsq_blocks", "sculpt_chunk", "sweep_counts"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"smfa::{op}", "CPU")


def test_large_outputs_streaming_store_path():
    """Outputs of >= 64 MiB take the non-temporal-store path of the AVX2 kernel: same bits."""
    from smfa_core.backends import cpu

    ref = _reference

    n = 32 * 2**20 + 13
    # The edge values of "mixed" over one odd period, tiled to the 64 MiB size: generating them
    # for all n elements took most of this test's time, and the kernel is elementwise, so the
    # streamed stores see every edge kind at every alignment all the same.
    period = 2**20 + 13
    f0, a0 = make_inputs(torch.bfloat16, period, "mixed", seed=3)
    reps = -(-n // period)
    f, a = f0.repeat(reps)[:n].contiguous(), a0.repeat(reps)[:n].contiguous()
    w = torch.randn(n, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    for mode, ww, off in ((3, None, 0), (3, w, 1), (1, w, 0)):
        o1 = torch.empty(n + 1, dtype=torch.bfloat16)[off:off + n]
        o2 = torch.empty(n, dtype=torch.bfloat16)
        m1 = torch.empty((n + 7) // 8, dtype=torch.uint8)
        m2 = m1.clone()
        c1 = cpu.sculpt_chunk(f, None, a, None, 0.37, mode, ww, o1, m1)
        c2 = ref.sculpt_chunk(f, None, a, None, 0.37, mode, ww, o2, m2)
        assert_bits_equal(c1, c2, "counts")
        assert_bits_equal(o1, o2, "out")
        assert_bits_equal(m1, m2, "mask")


def test_build_has_the_ops_version_the_python_code_reads():
    from smfa_core import _ext

    assert _ext.C is not None and _ext.C.OPS_VERSION == _ext.OPS_VERSION  # a stale build is refused at load


# ------------------------------------------------------------------ both ISA paths

def _isa_outputs(be) -> list[tuple[str, torch.Tensor]]:
    """Every op of `be` on bf16 / fp16 / fp32 inputs (edge values plus raw bit patterns, so
    NaN payloads and Inf too), sizes that are no multiple of 8 or 16, with and without bases,
    w and mask, every mode; the bf16-without-bases cases take the AVX2 direct path."""
    res = []
    for dtype, n in itertools.product(DTYPES, (7, 1003, 40013, 3 * 65536 + 13)):
        f, a = make_inputs(dtype, n, "mixed", seed=n)
        g = torch.Generator().manual_seed(n)
        iv = {torch.float32: torch.int32}.get(dtype, torch.int16)
        raw = torch.randint(-2**31, 2**31, (2, n), generator=g).to(iv).view(dtype)
        pick = torch.rand(2, n, generator=g) < 0.1
        f, a = torch.where(pick[0], raw[0], f).contiguous(), torch.where(pick[1], raw[1], a).contiguous()
        fx, fb = make_pair(f, seed=1)
        ax, ab = make_pair(a, seed=2)
        w = make_weight(dtype, n, seed=3)
        w[: n // 50] = raw[0, : n // 50]  # NaN / Inf payloads in w too
        tag = f"{_name(dtype)} n={n}"
        # Sums of squares see Inf, not NaN: which of two NaNs an fp64 add returns is up to the
        # compiler's operand order (IEEE leaves it open), so only a NaN-free sum has fixed bits.
        fi = torch.where(f.isnan(), torch.tensor(float("inf"), dtype=dtype), f)
        res.append((f"sumsq {tag}", be.sumsq_blocks(fi, None)))
        res.append((f"sumsq base {tag}", be.sumsq_blocks(*make_pair(fi, seed=4))))
        for i, (bases, ww, with_mask) in enumerate(itertools.product((False, True), (None, w), (False, True))):
            mode, t = i % 4, TS[i % len(TS)]
            out = torch.full((n,), 7.0, dtype=dtype)
            mask = torch.full(((n + 7) // 8,), 0xA5, dtype=torch.uint8) if with_mask else None
            args = (fx, fb, ax, ab) if bases else (f, None, a, None)
            counts = be.sculpt_chunk(*args, t, mode, ww, out, mask)
            case = f"sculpt {tag} mode={mode} t={t} bases={bases} w={ww is not None} mask={with_mask}"
            res += [(f"counts {case}", counts), (f"out {case}", out)]
            if with_mask:
                res.append((f"mask {case}", mask))
        ts = torch.tensor([0.0, 0.37, 1.0, 3.0])
        res.append((f"sweep {tag}", be.sweep_counts(f, None, a, None, ts)))
        res.append((f"sweep base {tag}", be.sweep_counts(fx, fb, ax, ab, ts)))
    return res


_PORTABLE_SCRIPT = """
import sys, torch
sys.path.insert(0, sys.argv[2])
import test_kernels_cpu as t
from smfa_core import _ext
torch.save({"isa": _ext.C.cpu_isa(), "desc": t.cpu_backend.available()[1],
            "res": t._isa_outputs(t.cpu_backend)}, sys.argv[1])
"""


def test_portable_path_same_bits_as_default_and_reference(tmp_path):
    """SMFA_CPU_ISA=portable (read once per process, hence the subprocess) runs the portable
    kernels: cpu_isa() says so, and every output has the bits of the default path (AVX2 on a
    CPU with AVX2 + F16C) and of the reference."""
    here = pathlib.Path(__file__).resolve().parent
    env = dict(os.environ, SMFA_CPU_ISA="portable",
               PYTHONPATH=os.pathsep.join([str(here.parents[1]), str(here.parent), os.environ.get("PYTHONPATH", "")]))
    path = tmp_path / "portable.pt"
    subprocess.run([sys.executable, "-c", _PORTABLE_SCRIPT, str(path), str(here)], env=env, check=True,
                   timeout=600)
    got = torch.load(path)
    assert got["isa"] == "portable"
    assert got["desc"].endswith(", portable")
    default, expected = _isa_outputs(cpu_backend), _isa_outputs(ref)
    assert [k for k, _ in got["res"]] == [k for k, _ in default] == [k for k, _ in expected]
    errors = []
    for (name, p), (_, d), (_, e) in zip(got["res"], default, expected):
        for x, y, what in ((p, d, f"portable vs {cpu_backend.isa()}"), (d, e, f"{cpu_backend.isa()} vs reference")):
            try:
                assert_bits_equal(x, y, f"{what}: {name}")
            except AssertionError as exc:
                errors.append(str(exc))
    assert not errors, f"{len(errors)} mismatches:\n" + "\n".join(errors[:20])


def test_default_isa_is_avx2_where_the_cpu_has_it():
    from smfa_core import available_backends

    isa = cpu_backend.isa()
    assert isa in ("avx2", "portable")
    assert available_backends()["cpu"].endswith(f", {isa}")
    if os.environ.get("SMFA_CPU_ISA") == "portable":
        assert isa == "portable"
        return
    try:
        flags = next(line for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags")
    assert isa == ("avx2" if {"avx2", "f16c"} <= set(flags) else "portable")
