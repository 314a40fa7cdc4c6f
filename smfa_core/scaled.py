"""A delta seen scaled by a constant (`smfa merge --scale`, task-vector negation): the
kernels are unchanged, they read s·ΔW in fp32 instead of ΔW."""

from __future__ import annotations

import math

import torch

from .errors import SmfaError
from .sources import DeltaSource


def check_scale(scale: float) -> float:
    """Validate --scale: returns it as a float; SmfaError unless it is a finite number (not a bool)."""
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale)):
        raise SmfaError(f"--scale must be a finite number, got {scale!r}")
    return float(scale)


class ScaledSource(DeltaSource):
    """`src` with every delta entry multiplied by `scale`: float32(x) - float32(x_base) (one
    fp32 rounding, as the kernels would do) times scale (a second one; exact for ±1 and powers
    of two). Reads come back as one fp32 tensor, so dtype() is fp32 for every tensor."""

    def __init__(self, src: DeltaSource, scale: float) -> None:
        self._src, self.scale = src, check_scale(scale)
        self.path, self.kind = src.path, f"{src.kind} x {scale:g}"
        self._buf = torch.empty(0, dtype=torch.float32)

    def names(self) -> list[str]:
        return self._src.names()

    def shape(self, name: str) -> tuple[int, ...]:
        return self._src.shape(name)

    def dtype(self, name: str) -> torch.dtype:
        return torch.float32

    def read(self, name: str, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, xb = self._src.read(name, start, stop)
        n = stop - start
        if self._buf.numel() < n or self._buf.device != x.device:
            self._buf = torch.empty(n, dtype=torch.float32, device=x.device)
        out = self._buf[:n]
        out.copy_(x.reshape(-1))
        if xb is not None:
            out.sub_(xb.reshape(-1).to(torch.float32))
        return out.mul_(self.scale), None

    def byte_ranges(self, name: str) -> list[tuple[str, int, int]]:
        return self._src.byte_ranges(name)

    def compute_on(self, device: torch.device | str) -> None:
        if hasattr(self._src, "compute_on"):
            self._src.compute_on(device)

    def close(self) -> None:
        self._src.close()
