"""The host emulator of tests/cuda_emu, and what only it can check without a GPU.

1. The emulator keeps the CUDA semantics the kernels rely on (shuffles, barriers, indices,
   atomics) and reports what a GPU would leave undefined (tests/core/cuda_emu_selftest.cu).
2. The CUDA kernels never touch a byte outside their tensors: every operand sits flush
   against a PROT_NONE page, in front or behind, in a subprocess (a fault is a clean failure).
3. Grid sizing by SM count: grid-stride loops give the same bits on 1, 2 or 7 "SMs".
The bit-exactness of the kernels over dtypes x sizes x modes x edge values is in
tests/core/test_kernels_gpu.py (backend `cuda-emulated`).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import subprocess
import sys

import cuda_emulated as emu
import pytest
import torch
from kernel_utils import assert_bits_equal, make_inputs, make_pair, make_weight

from smfa_core.backends import reference as ref

HERE = os.path.dirname(os.path.abspath(__file__))
SELFTEST = os.path.join(HERE, "cuda_emu_selftest.cu")
U64, I32, F64 = torch.int64, torch.int32, torch.float64
LAUNCH_FAILURE, INVALID_CONFIGURATION = 719, 9

pytestmark = pytest.mark.skipif(not emu.available()[0], reason=f"cuda-emulated: {emu.available()[1]}")


@pytest.fixture(scope="module")
def st(tmp_path_factory):
    so = ctypes.CDLL(emu.compile_emulated(str(tmp_path_factory.mktemp("emu") / "selftest.so"), [SELFTEST]))
    P, INT = ctypes.c_void_p, ctypes.c_int
    so.selftest_shfl.argtypes = [P, P, INT, INT]
    so.selftest_sync.argtypes = [P, INT, INT]
    so.selftest_atomic.argtypes = [P, INT, INT]
    for name in ("selftest_index", "selftest_exit_before_shuffle", "selftest_deadlock"):
        getattr(so, name).argtypes = [P]
    return so


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_selftest_kernels_are_valid_cuda(tmp_path):
    res = subprocess.run(["nvcc", "-c", "-arch=sm_90", SELFTEST, "-o", str(tmp_path / "st.o")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("delta", (1, 4, 16, 31))
def test_shfl_down(st, delta):
    n = 128  # two blocks of two warps
    out, dout = torch.zeros(n, dtype=U64), torch.zeros(n, dtype=F64)
    assert st.selftest_shfl(out.data_ptr(), dout.data_ptr(), 2, delta) == 0
    t = torch.arange(n)
    src = torch.where(t % 32 + delta < 32, t + delta, t)  # out of range: own value
    assert out.tolist() == (src * 10).tolist()
    assert dout.tolist() == (src.double() + 0.5).tolist()


@pytest.mark.parametrize("threads", (33, 256, 1024))
def test_syncthreads(st, threads):
    blocks = 3
    out = torch.full((blocks * threads,), -7, dtype=I32)
    assert st.selftest_sync(out.data_ptr(), blocks, threads) == 0
    t = torch.arange(threads)
    exp = torch.cat([(t + 1) % threads + 1000 * b for b in range(blocks)])
    assert out.tolist() == exp.tolist()


def test_indices(st):
    out = torch.full((120,), -1, dtype=I32)
    assert st.selftest_index(out.data_ptr()) == 0
    exp = [b * 100000 + t * 10 + 2 for b in range(3) for t in range(40)]
    assert out.tolist() == exp


def test_atomics(st):
    c = torch.zeros(1, dtype=U64)
    assert st.selftest_atomic(c.data_ptr(), 5, 96) == 0
    assert c.item() == 5 * (48 * 1 + 48 * 2)


def test_undefined_behaviour_is_reported_and_cleared(st):
    out = torch.zeros(64, dtype=U64)
    assert st.selftest_exit_before_shuffle(out.data_ptr()) == LAUNCH_FAILURE
    assert st.selftest_deadlock(out.data_ptr()) == LAUNCH_FAILURE  # and returns instead of hanging
    c = torch.zeros(1, dtype=U64)
    assert st.selftest_atomic(c.data_ptr(), 1, 32) == 0  # errors do not stick to the next launch


def test_bad_launch_configuration(st):
    out = torch.zeros(2048, dtype=I32)
    assert st.selftest_sync(out.data_ptr(), 1, 1025) == INVALID_CONFIGURATION
    assert st.selftest_sync(out.data_ptr(), 0, 32) == INVALID_CONFIGURATION
    assert int(out.abs().sum()) == 0  # nothing ran


# ------------------------------------------------------------------ kernels vs guard pages

PROT_NONE = 0
GUARD_SIZES = (1, 7, 8, 9, 64, 257, 65536, 65543, 65536 + 256 * 31 + 5)  # the last: 31 rows + a partial one
_keep: list = []


def _guarded(src: torch.Tensor, where: str) -> torch.Tensor:
    """A copy of src whose first byte follows a PROT_NONE page ("front"), whose last byte
    precedes one ("back"), or which starts 16-byte aligned (so vector loads are used) less
    than 16 bytes before one ("back16")."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = mmap.PAGESIZE
    nbytes = src.numel() * src.element_size()
    data_pages = -(-nbytes // page)
    mm = mmap.mmap(-1, (data_pages + 2) * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    for p in (base, base + (data_pages + 1) * page):
        assert libc.mprotect(p, page, PROT_NONE) == 0, ctypes.get_errno()
    off = {"front": page, "back": (data_pages + 1) * page - nbytes,
           "back16": ((data_pages + 1) * page - nbytes) // 16 * 16}[where]
    t = torch.frombuffer(mm, dtype=src.dtype, count=src.numel(), offset=off)
    t.copy_(src)
    _keep.append(mm)
    return t


def guard_page_cases() -> int:
    """Run every launcher with all operands guarded; assert reference bits. Returns the case count."""
    cases = 0
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for n in GUARD_SIZES:
            f, a = make_inputs(dtype, n, "mixed", seed=n)
            f, fb = make_pair(f, seed=1)
            a, ab = make_pair(a, seed=2)
            w = make_weight(dtype, n, seed=3)
            ts = torch.tensor([0.0, 0.5, 1.0, 3.0])
            for where in ("front", "back", "back16"):
                g = {k: _guarded(v, where) for k, v in dict(f=f, fb=fb, a=a, ab=ab, w=w).items()}
                out = _guarded(torch.zeros(n, dtype=dtype), where)
                mask = _guarded(torch.zeros((n + 7) // 8, dtype=torch.uint8), where)
                counts = emu.sculpt_chunk(g["f"], g["fb"], g["a"], g["ab"], 0.5, 3, g["w"], out, mask)
                rout, rmask = torch.empty(n, dtype=dtype), torch.empty((n + 7) // 8, dtype=torch.uint8)
                rcounts = ref.sculpt_chunk(f, fb, a, ab, 0.5, 3, w, rout, rmask)
                tag = f"{dtype} n={n} {where}"
                assert_bits_equal(counts, rcounts, f"counts {tag}")
                assert_bits_equal(out, rout, f"out {tag}")
                assert_bits_equal(mask, rmask, f"mask {tag}")
                emu.sculpt_chunk(g["f"], None, g["a"], None, 1.0, 1, None, out, None)
                assert_bits_equal(emu.sumsq_blocks(g["f"], g["fb"]), ref.sumsq_blocks(f, fb), f"sumsq {tag}")
                assert_bits_equal(emu.sumsq_blocks(g["a"]), ref.sumsq_blocks(a), f"sumsq a {tag}")
                assert_bits_equal(emu.sweep_counts(g["f"], g["fb"], g["a"], g["ab"], ts),
                                  ref.sweep_counts(f, fb, a, ab, ts), f"sweep {tag}")
                cases += 1
    return cases


def test_kernels_stay_inside_their_tensors():
    code = "import test_cuda_emulated as t; print('cases', t.guard_page_cases())"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", code], cwd=HERE, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, f"rc={res.returncode} (-11: a kernel touched a guard page)\n{res.stderr[-3000:]}"
    assert f"cases {3 * len(GUARD_SIZES) * 3}" in res.stdout, res.stdout


# ------------------------------------------------------------------ grid sizing

@pytest.mark.parametrize("sms", (1, 7))
def test_grid_stride_over_sm_counts(sms):
    """With 1 SM the sumsq grid has 64 warps for 70 blocks, so warps loop; with 7 it has one
    warp per block (9 CTAs). The sculpt and sweep grids loop on both: they have one thread per
    8 elements and at most 8 (sculpt) or 4 (sweep) CTAs of 256 per SM, so 7 SMs cover 114688
    elements per pass and the 5-block tensor below takes three (sculpting the 70-block sumsq
    tensor on the emulator instead took most of this test's time, for no other coverage)."""
    n = 70 * 65536 + 5
    f = make_inputs(torch.bfloat16, n, "random", seed=sms)[0]
    lib = emu.lib()
    try:
        emu.set_sms(sms)
        before = lib.smfa_emu_threads_run()
        got = emu.sumsq_blocks(f)
        ctas = min(-(-70 * 32 // 256), 8 * sms)  # min(needed, 8 CTAs per SM)
        assert lib.smfa_emu_threads_run() - before == ctas * 256
        assert_bits_equal(got, ref.sumsq_blocks(f), f"sumsq sms={sms}")
        n = 5 * 65536 + 5
        f, a = make_inputs(torch.bfloat16, n, "random", seed=sms)
        w = make_weight(torch.bfloat16, n, seed=1)
        assert -(-n // 8) > 8 * sms * 256  # more mask bytes than threads: the sculpt grid loops
        out, mask = torch.empty(n, dtype=torch.bfloat16), torch.empty((n + 7) // 8, dtype=torch.uint8)
        counts = emu.sculpt_chunk(f, None, a, None, 0.75, 3, w, out, mask)
        rout, rmask = torch.empty_like(out), torch.empty_like(mask)
        assert_bits_equal(counts, ref.sculpt_chunk(f, None, a, None, 0.75, 3, w, rout, rmask), "counts")
        assert_bits_equal(out, rout, "out")
        assert_bits_equal(mask, rmask, "mask")
        ts = torch.linspace(0, 2, 40)  # two sweep launches
        assert_bits_equal(emu.sweep_counts(f, None, a, None, ts), ref.sweep_counts(f, None, a, None, ts), "sweep")
    finally:
        emu.set_sms(2)
