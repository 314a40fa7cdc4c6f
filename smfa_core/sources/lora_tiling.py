"""LoRA expansion: ΔW = s·B@A (or its transpose) computed in row tiles on a fixed grid, so
that a value's bits never depend on the element range that was asked for."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch

from .base import _Scratch

#: LoRA products are computed in row tiles of about this many fp32 elements (16 MiB), on a fixed grid.
LORA_TILE_ELEMS = 1 << 22
_TILE_CACHE = 2  # consecutive chunks share a border tile: keep the last two


def tile_elems() -> int:
    """The tile size in force: the package attribute `smfa_core.sources.LORA_TILE_ELEMS`, read at
    each call, so that one setting (a test's, a tuning run's) applies to every source. (The
    package is loaded whenever this module is: looked up, not imported, so no import cycle.)"""
    return sys.modules[__package__].LORA_TILE_ELEMS


@dataclass
class LoraModule:
    """One LoRA target module: its factor keys, fp32 factors and how they expand."""

    module: str  # module path, e.g. model.language_model.layers.0.mlp.down_proj
    kind: str  # "linear" | "embedding" | "conv"
    a_key: str
    b_key: str
    a: torch.Tensor | None = None  # fp32 (r, cols...) ; embedding: (r, num_embeddings)
    b: torch.Tensor | None = None  # fp32 (rows, r)     ; embedding: (dim, r)
    r: int = 0
    scaling: float = 1.0
    transposed: bool = False  # ΔW = (s·B@A).T  (fan_in_fan_out, embeddings)
    shape: tuple[int, ...] = ()


def shape_of_module(mod: LoraModule) -> tuple[int, ...]:
    """The shape of the module's ΔW (conv: the shape set when the factors were loaded)."""
    assert mod.a is not None and mod.b is not None
    if mod.kind == "conv":
        return mod.shape
    out_f, in_f = mod.b.shape[0], mod.a.shape[1]
    return (in_f, out_f) if mod.transposed else (out_f, in_f)


class LoraTiles:
    """Expands flat element ranges of LoRA deltas on one device, keeping the last few tiles."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.scratch = _Scratch(device)
        self._tiles: list[tuple[tuple[str, int], torch.Tensor, torch.Tensor]] = []  # (key, tile, store)

    def read(self, name: str, mod: LoraModule, start: int, stop: int) -> torch.Tensor:
        """Flat elements [start, stop) of the module's ΔW in fp32: a view of a tile when the range
        lies inside one, else a copy assembled from the tiles it touches."""
        if start == stop:
            return self.scratch.typed("delta", 0, torch.float32)
        cols = math.prod(mod.shape[1:])
        tile_rows = max(1, tile_elems() // cols)
        span = tile_rows * cols
        t_first, t_end = start // span, -(-stop // span)
        if t_end - t_first == 1:  # inside one tile: a view of it
            t0 = t_first * span
            return self._tile(name, mod, t_first, tile_rows, cols)[start - t0 : stop - t0]
        out = self.scratch.typed("delta", stop - start, torch.float32)
        for t in range(t_first, t_end):
            tile = self._tile(name, mod, t, tile_rows, cols)
            t0 = t * span
            lo, hi = max(start, t0), min(stop, t0 + tile.numel())
            out[lo - start : hi - start].copy_(tile[lo - t0 : hi - t0])
        return out

    def _tile(self, name: str, mod: LoraModule, t: int, tile_rows: int, cols: int) -> torch.Tensor:
        """Rows [t·tile_rows, (t+1)·tile_rows) of s·B@A (or its transpose), flattened, in fp32.

        Tiles sit on a fixed grid and are always computed by the same matmul into a buffer of their
        own, so a value's bits do not depend on which range was asked for.
        """
        key = (name, t)
        for i, (k, flat, _store) in enumerate(self._tiles):
            if k == key:
                self._tiles.append(self._tiles.pop(i))
                return flat
        rows = mod.shape[0]
        a, b = t * tile_rows, min(rows, (t + 1) * tile_rows)
        store = None
        if len(self._tiles) >= _TILE_CACHE:
            _k, _flat, old = self._tiles.pop(0)
            if old.numel() >= (b - a) * cols:
                store = old
        if store is None:
            store = torch.empty(max(tile_rows * cols, 1), dtype=torch.float32, device=self.scratch.device)
        tile = store[: (b - a) * cols].view(b - a, cols)
        assert mod.a is not None and mod.b is not None
        # One GEMM with the scaling as its alpha (beta=0: the buffer's old contents are ignored).
        if mod.transposed:
            # rows a..b of (B@A).T = A[:, a:b].T @ B.T
            tile.addmm_(mod.a[:, a:b].t(), mod.b.t(), beta=0, alpha=mod.scaling)
        else:
            tile.addmm_(mod.b[a:b], mod.a, beta=0, alpha=mod.scaling)
        flat = tile.view(-1)
        self._tiles.append((key, flat, store))
        return flat

    def clear(self) -> None:
        self.scratch.clear()
        self._tiles.clear()
