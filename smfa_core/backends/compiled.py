"""The ops of smfa_core._C as torch.ops.smfa calls: the dispatcher picks the CPU or CUDA
implementation by the tensors' device. Shared by the `cpu` and `cuda` backends."""

from __future__ import annotations

import torch

from .. import _ext  # noqa: F401  (op schemas + loads smfa_core._C, which registers the kernels)


def sumsq_blocks(x, x_base=None):
    return torch.ops.smfa.sumsq_blocks(x, x_base)


def sculpt_chunk(f, f_base, a, a_base, t, mode, w, out, mask=None):
    return torch.ops.smfa.sculpt_chunk(f, f_base, a, a_base, t, mode, w, out, mask)


def sweep_counts(f, f_base, a, a_base, ts):
    return torch.ops.smfa.sweep_counts(f, f_base, a, a_base, ts)
