"""The CUDA kernels of csrc/cuda/*.cu, run on the host by the emulator in tests/cuda_emu.

Without a GPU nothing nvcc builds can run, so this compiles the kernels' very source with the
host compiler against tests/cuda_emu (fibers for threads, barriers for __syncthreads and the
warp shuffles) and loads the launcher API (csrc/cuda/sculpt_cuda.h) with ctypes. The module
looks like a backend (NAME, available, sumsq_blocks, sculpt_chunk, sweep_counts) over CPU
tensors, with the argument checks of csrc/cuda_ops.cpp, so the GPU kernel tests run it
against `reference` like the real `cuda` backend.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import glob
import os
import shutil
import subprocess
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CU_SOURCES = sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
EMU_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda_emu")
CXX = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
# -ffp-contract=off: the kernels' _rn intrinsics are plain operators here and must not fuse.
CXXFLAGS = ["-std=c++17", "-O2", "-ffp-contract=off", "-fPIC", "-shared", "-Wall", "-Wextra",
            "-Wno-unknown-pragmas", "-I" + EMU_DIR]

NAME = "cuda-emulated"
DEVICES = ("cpu",)
CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
P, INT, I64, F = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
BLOCK = 65536


def compile_emulated(out: str, cu_sources: list[str] | None = None) -> str:
    """Build `cu_sources` (default: every csrc/cuda/*.cu) with the emulator into the shared
    library `out`; raises RuntimeError with the compiler's output (warnings count as errors)."""
    if CXX is None:
        raise RuntimeError("no C++ compiler (g++/c++) on PATH")
    srcs = list(cu_sources or CU_SOURCES)
    cmd = [CXX, *CXXFLAGS, "-x", "c++", *srcs, "-x", "none", os.path.join(EMU_DIR, "cuda_emu.cpp"), "-o", out]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if res.returncode != 0 or "warning" in res.stderr:
        raise RuntimeError(f"{' '.join(cmd)}\n{res.stderr}")
    return out


def bind_launchers(so: ctypes.CDLL) -> ctypes.CDLL:
    """Declare the launcher API of csrc/cuda/sculpt_cuda.h on a loaded library (nvcc-built or emulated)."""
    so.smfa_cuda_sumsq_blocks.argtypes = [P, P, INT, I64, P, P]
    so.smfa_cuda_sculpt_chunk.argtypes = [P, P, INT, P, P, INT, F, INT, P, INT, P, INT, P, I64, P, P]
    so.smfa_cuda_sweep_counts.argtypes = [P, P, INT, P, P, INT, P, I64, I64, P, P]
    for fn in (so.smfa_cuda_sumsq_blocks, so.smfa_cuda_sculpt_chunk, so.smfa_cuda_sweep_counts):
        fn.restype = INT
    return so


@functools.cache
def lib() -> ctypes.CDLL:
    d = tempfile.mkdtemp(prefix="smfa-cuda-emu-")
    atexit.register(shutil.rmtree, d, True)
    so = bind_launchers(ctypes.CDLL(compile_emulated(os.path.join(d, "libsmfa_cuda_emu.so"))))
    so.smfa_emu_set_sms.argtypes = [INT]
    so.smfa_emu_launches.restype = I64
    so.smfa_emu_threads_run.restype = I64
    return so


def available() -> tuple[bool, str]:
    if not CU_SOURCES:
        return False, "no csrc/cuda/*.cu"
    if CXX is None:
        return False, "no C++ compiler (g++/c++) on PATH"
    return True, f"csrc/cuda/*.cu on the host emulator ({CXX})"


def set_sms(sms: int) -> None:
    """The SM count the launchers size their grids by (2 unless changed)."""
    lib().smfa_emu_set_sms(sms)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise RuntimeError(f"smfa cuda-emulated: {what} returned CUDA error {rc}")


def _code(x: torch.Tensor, what: str) -> int:
    if x.dtype not in CODES:
        raise TypeError(f"{what} dtype {x.dtype} is not bf16/fp16/fp32")
    return CODES[x.dtype]


def _operand(x: torch.Tensor, n: int, what: str) -> torch.Tensor:
    if x.device.type != "cpu":
        raise RuntimeError(f"{what} must be on cpu, got {x.device}")
    if x.numel() != n:
        raise RuntimeError(f"{what} has {x.numel()} elements, expected {n}")
    _code(x, what)
    return x.contiguous()


def _pair(x_base: torch.Tensor | None, n: int, code: int, what: str, keep: list) -> int | None:
    if x_base is None:
        return None
    xb = _operand(x_base, n, what)
    if _code(xb, what) != code:
        raise RuntimeError(f"{what} must have the dtype of its pair")
    keep.append(xb)
    return xb.data_ptr()


def sumsq_blocks(x: torch.Tensor, x_base: torch.Tensor | None = None) -> torch.Tensor:
    n = x.numel()
    xc, keep = _operand(x, n, "x"), []
    code = _code(xc, "x")
    pb = _pair(x_base, n, code, "x_base", keep)
    out = torch.empty((n + BLOCK - 1) // BLOCK, dtype=torch.float64)
    _check(lib().smfa_cuda_sumsq_blocks(xc.data_ptr(), pb, code, n, out.data_ptr(), None), "sumsq_blocks")
    return out


def sculpt_chunk(f, f_base, a, a_base, t, mode, w, out, mask=None) -> torch.Tensor:
    n = f.numel()
    if not 0 <= mode <= 3:
        raise RuntimeError(f"unknown mode {mode}")
    keep: list = []
    fc, ac = _operand(f, n, "f"), _operand(a, n, "a")
    fdt, adt = _code(fc, "f"), _code(ac, "a")
    pfb = _pair(f_base, n, fdt, "f_base", keep)
    pab = _pair(a_base, n, adt, "a_base", keep)
    pw, wdt = None, 0
    if w is not None:
        wc = _operand(w, n, "w")
        keep.append(wc)
        pw, wdt = wc.data_ptr(), _code(wc, "w")
    if out.device.type != "cpu" or out.numel() != n or not out.is_contiguous():
        raise RuntimeError(f"out must be a contiguous tensor of {n} elements on cpu")
    pm = None
    if mask is not None:
        if mask.dtype != torch.uint8 or not mask.is_contiguous() or mask.numel() != (n + 7) // 8:
            raise RuntimeError("mask must be a contiguous uint8 tensor of ceil(n/8) bytes")
        pm = mask.data_ptr()
    counts = torch.empty(3, dtype=torch.int64)
    _check(lib().smfa_cuda_sculpt_chunk(fc.data_ptr(), pfb, fdt, ac.data_ptr(), pab, adt, float(t), mode, pw,
                                        wdt, out.data_ptr(), _code(out, "out"), pm, n, counts.data_ptr(), None),
           "sculpt_chunk")
    return counts


def sweep_counts(f, f_base, a, a_base, ts) -> torch.Tensor:
    n = f.numel()
    keep: list = []
    fc, ac = _operand(f, n, "f"), _operand(a, n, "a")
    fdt, adt = _code(fc, "f"), _code(ac, "a")
    pfb = _pair(f_base, n, fdt, "f_base", keep)
    pab = _pair(a_base, n, adt, "a_base", keep)
    tsc = ts.reshape(-1).to("cpu", torch.float32).contiguous()
    counts = torch.empty(1 + tsc.numel(), dtype=torch.int64)
    _check(lib().smfa_cuda_sweep_counts(fc.data_ptr(), pfb, fdt, ac.data_ptr(), pab, adt,
                                        tsc.data_ptr() if tsc.numel() else None, tsc.numel(), n,
                                        counts.data_ptr(), None), "sweep_counts")
    return counts
