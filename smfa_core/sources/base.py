"""What every delta source shares: the protocol, the file names of the formats, scratch
buffers, and the helpers that map names and upcast pairs."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from ..errors import SmfaError
from ..names import match_names

KINDS = ("delta", "lora", "masked-adapter", "checkpoint")
# A masked adapter keeps the LoRA weights under another name than PEFT's, so that PEFT cannot
# load it as a plain (unmasked) adapter by mistake; the masks sit next to them.
MASK_FILE = "smfa_mask.safetensors"
MASKED_WEIGHTS = "smfa_adapter_model.safetensors"

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_WEIGHTS_BIN = "adapter_model.bin"


class DeltaSource(ABC):
    """One delta, tensor by tensor. ``names()`` are canonical (mapped onto ``target_names``)."""

    path: str
    kind: str

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def shape(self, name: str) -> tuple[int, ...]: ...

    @abstractmethod
    def dtype(self, name: str) -> torch.dtype:
        """dtype of the ``x`` that ``read`` returns (fp32 for LoRA products)."""

    @abstractmethod
    def read(self, name: str, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Flattened elements ``[start, stop)`` as ``(x, x_base)``; views valid until the next read."""

    @abstractmethod
    def close(self) -> None: ...

    def byte_ranges(self, name: str) -> list[tuple[str, int, int]]:
        """The file byte ranges `read(name, ...)` reads, for read-ahead (none by default)."""
        return []

    def numel(self, name: str) -> int:
        return math.prod(self.shape(name))

    def __enter__(self) -> DeltaSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, {len(self.names())} tensors)"

    # -- helpers shared by the implementations ------------------------------------------------
    def _check_range(self, name: str, start: int, stop: int) -> None:
        n = self.numel(name)
        if not (0 <= start <= stop <= n):
            raise SmfaError(f"{self.path}: tensor {name!r}: element range [{start}, {stop}) is outside [0, {n})")

    def _unknown(self, name: str) -> SmfaError:
        return SmfaError(f"{self.path}: no tensor {name!r} in this {self.kind} source")


class _Scratch:
    """Reusable byte buffers, one per slot, grown on demand (never shrunk), on one device."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self._bufs: dict[str, torch.Tensor] = {}
        self.device = torch.device(device)

    def bytes(self, slot: str, nbytes: int) -> torch.Tensor:
        buf = self._bufs.get(slot)
        if buf is None or buf.numel() < nbytes:
            buf = self._bufs[slot] = torch.empty(max(nbytes, 64), dtype=torch.uint8, device=self.device)
        return buf[: max(nbytes, 0)]

    def typed(self, slot: str, n: int, dtype: torch.dtype) -> torch.Tensor:
        isz = torch.empty((), dtype=dtype).element_size()
        return self.bytes(slot, n * isz).view(dtype)

    def clear(self) -> None:
        self._bufs.clear()


def _map_onto(own: list[str], target_names, label: str, path: str, target_label: str) -> dict[str, str]:
    """own name -> canonical name (identity without target_names)."""
    if target_names is None:
        return {n: n for n in own}
    return match_names(
        own, list(target_names), source_label=f"{label} ({path})", target_label=target_label
    )


def _read_pair_upcast(scratch: _Scratch, x: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both chunks exactly upcast to fp32 (used when the two dtypes differ)."""
    n = x.numel()
    x32 = scratch.typed("x32", n, torch.float32)
    xb32 = scratch.typed("xb32", n, torch.float32)
    x32.copy_(x)
    xb32.copy_(xb)
    return x32, xb32

