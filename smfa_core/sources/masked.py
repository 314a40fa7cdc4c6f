"""Masked adapters (`smfa sculpt --emit adapter`): a LoRA adapter plus the bit-packed mask of
each of its tensors, read back as the masked delta."""

from __future__ import annotations

import os

import torch

from ..errors import SmfaError
from ..names import match_names
from ..safetensors_io import Checkpoint, SafetensorsReader
from .base import MASK_FILE, MASKED_WEIGHTS, DeltaSource, _Scratch
from .lora import LoraSource

# Bit j of a mask byte b (little bit order: element 8i + j of the tensor) as a bool table.
_BYTE_BITS = ((torch.arange(256, dtype=torch.int32).unsqueeze(1) >> torch.arange(8, dtype=torch.int32)) & 1).bool()
_ZERO = torch.zeros((), dtype=torch.float32)


class MaskedAdapterSource(DeltaSource):
    """A masked adapter: a PEFT LoRA adapter's config and weights (the weights renamed
    ``smfa_adapter_model.safetensors``, so PEFT refuses the directory instead of loading the
    unmasked adapter) plus ``smfa_mask.safetensors``, the bit-packed sculpting mask of each of
    its tensors (written by ``smfa sculpt --emit adapter``).

    The delta is the LoRA delta (as ``LoraSource`` computes it, fp32) with the masked entries set
    to +0.0; tensors the adapter saves in full give (saved − base) masked the same way. Merging it
    (``smfa merge``) therefore gives the bits of ``smfa sculpt --emit merged`` on the same inputs.
    Its size is the adapter's plus one bit per delta element.
    """

    kind = "masked-adapter"

    def __init__(self, path: str, *, base: Checkpoint | None = None, target_names=None, label: str = "forget"):
        path = os.fspath(path)
        if os.path.isfile(path):
            path = os.path.dirname(path) or "."
        self.path = path
        self.label = label
        mpath = os.path.join(path, MASK_FILE)
        if not os.path.isfile(mpath):
            raise SmfaError(f"{label} masked adapter {path}: no {MASK_FILE}")
        self._scratch = _Scratch()
        self._mask: SafetensorsReader | None = None
        self._lora = LoraSource(path, base=base, target_names=target_names, label=label, weights_file=MASKED_WEIGHTS)
        try:
            self._mask = SafetensorsReader(mpath)
            self._mask_of = match_names(self._lora.names(), list(self._mask.tensors),
                                        source_label=f"{label} adapter ({path})", target_label=f"mask ({mpath})")
            for name, mname in self._mask_of.items():
                info = self._mask.tensors[mname]
                want = (self._lora.numel(name) + 7) // 8
                if info.torch_dtype != torch.uint8 or tuple(info.shape) != (want,):
                    raise SmfaError(f"{mpath}: mask {mname!r} is {info.dtype} {list(info.shape)}, expected U8 "
                                    f"[{want}] (one bit per element of {name!r})")
        except BaseException:
            self.close()
            raise

    def names(self) -> list[str]:
        return self._lora.names()

    def shape(self, name: str) -> tuple[int, ...]:
        return self._lora.shape(name)

    def dtype(self, name: str) -> torch.dtype:
        return torch.float32

    def byte_ranges(self, name: str) -> list[tuple[str, int, int]]:
        assert self._mask is not None
        info = self._mask.tensors[self._mask_of[name]]
        return [*self._lora.byte_ranges(name), (info.path, info.start, info.end)]

    def read(self, name: str, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if name not in self._mask_of:
            raise self._unknown(name)
        self._check_range(name, start, stop)
        x, xb = self._lora.read(name, start, stop)
        n = stop - start
        out = self._scratch.typed("masked", n, torch.float32)
        if xb is not None:  # the pair's delta, as the kernels form it: one fp32 subtraction
            torch.sub(x.to(torch.float32), xb.to(torch.float32), out=out)
            x = out
        if n == 0:
            return out, None
        assert self._mask is not None
        b0, b1 = start // 8, (stop + 7) // 8
        packed = self._mask.read_into(self._mask_of[name], self._scratch.bytes("mask", b1 - b0), b0, b1)
        masked = _BYTE_BITS.index_select(0, packed.int()).view(-1)[start - 8 * b0 : start - 8 * b0 + n]
        torch.where(masked, _ZERO, x.to(torch.float32), out=out)  # +0.0, as the kernels write a masked entry
        return out, None

    def close(self) -> None:
        if getattr(self, "_lora", None) is not None:
            self._lora.close()
        if self._mask is not None:
            self._mask.close()
        self._scratch.clear()

