"""The `cpu` backend: the C++/OpenMP kernels of smfa_core._C (csrc/sculpt_cpu.cpp),
registered as the CPU implementations of the torch.ops.smfa ops."""

from __future__ import annotations

import torch

from .. import _ext  # noqa: F401  (op schemas + loads smfa_core._C, which registers the kernels)

NAME = "cpu"
DEVICES = ("cpu",)


def available() -> tuple[bool, str]:
    if _ext.C is None:
        return False, f"smfa_core._C not built ({_ext.error})"
    return True, f"C++/OpenMP, {torch.get_num_threads()} threads"


def sumsq_blocks(x, x_base=None):
    return torch.ops.smfa.sumsq_blocks(x, x_base)


def sculpt_chunk(f, f_base, a, a_base, t, mode, w, out, mask=None):
    return torch.ops.smfa.sculpt_chunk(f, f_base, a, a_base, t, mode, w, out, mask)


def sweep_counts(f, f_base, a, a_base, ts):
    return torch.ops.smfa.sweep_counts(f, f_base, a, a_base, ts)
