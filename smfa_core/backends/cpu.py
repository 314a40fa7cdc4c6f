"""The `cpu` backend: the C++/OpenMP kernels of smfa_core._C (csrc/norms_cpu.cpp,
sculpt_cpu.cpp, sweep_cpu.cpp), registered as the CPU implementations of the torch.ops.smfa ops.

Their vector path is chosen at run time (`isa()`): "avx2" when the CPU has AVX2 and F16C,
else "portable"; SMFA_CPU_ISA=portable forces the portable one. Both give the same bits."""

from __future__ import annotations

import torch

from .. import _ext
from .compiled import sculpt_chunk, sumsq_blocks, sweep_counts  # noqa: F401  (the backend's ops)

NAME = "cpu"
DEVICES = ("cpu",)


def isa() -> str:
    """The CPU kernels' vector path in this process: "avx2" or "portable" (see the module doc)."""
    if _ext.C is None:
        raise RuntimeError(f"smfa_core._C not built ({_ext.error})")
    return _ext.C.cpu_isa()


def available() -> tuple[bool, str]:
    """Whether the C++/OpenMP kernels of smfa_core._C are loaded: (ok, description or reason)."""
    if _ext.C is None:
        return False, f"smfa_core._C not built ({_ext.error})"
    return True, f"C++/OpenMP, {torch.get_num_threads()} threads, {isa()}"
