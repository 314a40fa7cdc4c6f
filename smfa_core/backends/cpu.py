"""The `cpu` backend: the C++/OpenMP kernels of smfa_core._C (csrc/sculpt_cpu.cpp),
registered as the CPU implementations of the torch.ops.smfa ops."""

from __future__ import annotations

import torch

from .. import _ext
from .compiled import sculpt_chunk, sumsq_blocks, sweep_counts  # noqa: F401  (the backend's ops)

NAME = "cpu"
DEVICES = ("cpu",)


def available() -> tuple[bool, str]:
    if _ext.C is None:
        return False, f"smfa_core._C not built ({_ext.error})"
    return True, f"C++/OpenMP, {torch.get_num_threads()} threads"
