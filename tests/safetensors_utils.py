"""Shared by the safetensors tests (tests/core/test_safetensors_*.py): bit-exact comparison,
random tensors of every dtype, hand-written files."""

from __future__ import annotations

import json
import struct

import safetensors.torch as st
import torch

from smfa_core.safetensors_io import (
    DTYPES,
)


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a tensor (bit-exact comparison, NaN-safe, works for every dtype)."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape) and torch.equal(bits(a), bits(b))


def random_tensor(dtype: torch.dtype, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    n = 1
    for d in shape:
        n *= d
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    isz = torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (n * isz,), dtype=torch.uint8, generator=gen)
    return raw.view(dtype).reshape(shape)


def official_types() -> dict[str, torch.dtype]:
    """The dtypes that both we and the installed safetensors.torch can store."""
    names = getattr(st, "_TYPES", {})
    return {k: v for k, v in DTYPES.items() if k in names}


SHAPES = [(), (0,), (3, 0, 2), (7,), (5, 3), (2, 3, 4)]


def raw_file(path, header, data: bytes = b"", *, n: int | None = None) -> str:
    """Write a safetensors file by hand. ``header`` is a dict or raw bytes."""
    hb = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb) if n is None else n) + hb + data)
    return str(path)


def valid_header() -> tuple[dict, bytes]:
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
    }
    return header, bytes(range(22))
