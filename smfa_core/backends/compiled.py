"""The ops of smfa_core._C as torch.ops.smfa calls: the dispatcher picks the CPU or CUDA
implementation by the tensors' device. Shared by the `cpu` and `cuda` backends."""

from __future__ import annotations

import torch

from .. import _ext  # noqa: F401  (op schemas + loads smfa_core._C, which registers the kernels)


def sumsq_blocks(x: torch.Tensor, x_base: torch.Tensor | None = None) -> torch.Tensor:
    """Per-block sums of squares of x - x_base through torch.ops.smfa (the C++/CUDA kernels of smfa_core._C)."""
    return torch.ops.smfa.sumsq_blocks(x, x_base)


def sculpt_chunk(f: torch.Tensor, f_base: torch.Tensor | None, a: torch.Tensor, a_base: torch.Tensor | None, t: float,
                 mode: int, w: torch.Tensor | None, out: torch.Tensor,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sculpt one chunk into `out` through torch.ops.smfa (the C++/CUDA kernels of smfa_core._C); returns the counts."""
    return torch.ops.smfa.sculpt_chunk(f, f_base, a, a_base, t, mode, w, out, mask)


def sweep_counts(f: torch.Tensor, f_base: torch.Tensor | None, a: torch.Tensor, a_base: torch.Tensor | None,
                 ts: torch.Tensor) -> torch.Tensor:
    """Conflict and per-threshold masked counts through torch.ops.smfa (the C++/CUDA kernels of smfa_core._C)."""
    return torch.ops.smfa.sweep_counts(f, f_base, a, a_base, ts)
