"""The `reference` backend: pure torch, the executable spec of the sculpt contract (README, Numerics; docs/architecture.md).

Every other backend is tested against these functions for identical bits. Inputs are
1-D contiguous chunks (the engine flattens); dtypes bf16/fp16/fp32, each tensor of a pair
(x, x_base) of one dtype. Nothing here is clever on purpose.
"""

from __future__ import annotations

import torch

from .._ops import BLOCK, LANES

NAME = "reference"
DEVICES = ("cpu", "cuda")


def delta_f32(x: torch.Tensor, x_base: torch.Tensor | None) -> torch.Tensor:
    """The delta in fp32: exact upcast, or one fp32 subtraction for (checkpoint, base)."""
    x32 = x.reshape(-1).to(torch.float32)
    if x_base is not None:
        x32 = x32 - x_base.reshape(-1).to(torch.float32)
    return x32


def sumsq_blocks(x: torch.Tensor, x_base: torch.Tensor | None = None) -> torch.Tensor:
    """Per-BLOCK float64 sums of squares of x - x_base, summed in the kernels' fixed lane and tree order."""
    v = delta_f32(x, x_base).to(torch.float64)
    v = v * v  # exact: a float32 squared has at most 48 significant bits
    n = v.numel()
    nblocks = (n + BLOCK - 1) // BLOCK
    v = torch.nn.functional.pad(v, (0, nblocks * BLOCK - n))  # +0.0 leaves a sum unchanged
    v = v.view(nblocks, BLOCK // LANES, LANES)
    acc = torch.zeros(nblocks, LANES, dtype=torch.float64, device=v.device)
    for r in range(BLOCK // LANES):  # lanes accumulate sequentially, row by row
        acc += v[:, r, :]
    width = LANES
    while width > 1:  # fixed halving tree: lane l += lane l + width/2
        width //= 2
        acc = acc[:, :width] + acc[:, width : 2 * width]
    return acc[:, 0].contiguous()


def masks(f32: torch.Tensor, a32: torch.Tensor, t: float, mode: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, M): the sign-conflict mask and the final mask for `mode` (see _ops.MODES)."""
    # Sign test, never the product: the product of two tiny values underflows to 0.
    conflict = ((f32 > 0) & (a32 < 0)) | ((f32 < 0) & (a32 > 0))
    t32 = torch.tensor(t, dtype=torch.float32, device=f32.device)
    dominant = (t32 * a32.abs()) < f32.abs()  # one fp32 multiply, then compare
    if mode == 3:
        m = conflict & dominant
    elif mode == 1:
        m = conflict
    elif mode == 2:
        m = dominant
    elif mode == 0:
        m = torch.zeros_like(conflict)
    else:
        raise ValueError(f"unknown mode {mode}")
    return conflict, m


def pack_bits(m: torch.Tensor) -> torch.Tensor:
    """Bit i of byte j is element 8*j + i (little bit order), zero-padded at the end."""
    n = m.numel()
    padded = torch.nn.functional.pad(m.reshape(-1).to(torch.uint8), (0, (-n) % 8)).view(-1, 8)
    weights = torch.tensor([1 << i for i in range(8)], dtype=torch.int32, device=m.device)
    return (padded.to(torch.int32) * weights).sum(dim=1).to(torch.uint8)


def sculpt_chunk(
    f: torch.Tensor,
    f_base: torch.Tensor | None,
    a: torch.Tensor,
    a_base: torch.Tensor | None,
    t: float,
    mode: int,
    w: torch.Tensor | None,
    out: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sculpt one chunk into `out` (w + masked delta), packing its mask if given; [conflict, masked, nonfinite]."""
    f32 = delta_f32(f, f_base)
    a32 = delta_f32(a, a_base)
    conflict, m = masks(f32, a32, t, mode)
    sculpted = torch.where(m, torch.zeros((), dtype=torch.float32, device=f32.device), f32)
    if w is not None:
        sculpted = w.reshape(-1).to(torch.float32) + sculpted  # one fp32 add, one rounding below
    out.view(-1).copy_(sculpted.to(out.dtype))
    if mask is not None:
        mask.view(-1).copy_(pack_bits(m))
    nonfinite = (~torch.isfinite(out.view(-1))).sum()  # as written: an overflow of out's dtype counts
    return torch.stack([conflict.sum(), m.sum(), nonfinite]).to(torch.int64)


def sweep_counts(
    f: torch.Tensor,
    f_base: torch.Tensor | None,
    a: torch.Tensor,
    a_base: torch.Tensor | None,
    ts: torch.Tensor,
) -> torch.Tensor:
    """The conflict count, then the mode-both masked count at each threshold of `ts` (int64, on the CPU)."""
    f32 = delta_f32(f, f_base)
    a32 = delta_f32(a, a_base)
    counts = []
    conflict = None
    for t in ts.to(torch.float32).tolist():
        conflict, m = masks(f32, a32, t, 3)
        counts.append(m.sum())
    if conflict is None:
        conflict = ((f32 > 0) & (a32 < 0)) | ((f32 < 0) & (a32 > 0))
    return torch.stack([conflict.sum(), *counts]).to(torch.int64).cpu()


def available() -> tuple[bool, str]:
    """The pure-torch reference runs everywhere: always (True, description)."""
    return True, "pure torch"
