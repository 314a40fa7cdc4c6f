"""A fine-tuned checkpoint minus its base as a delta source."""

from __future__ import annotations

import os

import torch

from ..errors import SmfaError
from ..names import match_names
from ..safetensors_io import Checkpoint
from .base import _read_pair_upcast, _Scratch
from .dense import _FileSource, _open_delta_checkpoint


class CheckpointDeltaSource(_FileSource):
    """A fine-tuned checkpoint minus ``base``: ``x`` = fine-tuned chunk, ``x_base`` = base chunk.

    Tensors are paired by name (identical, or through the known layout rewrites of ``names``); every
    tensor of the fine-tuned checkpoint must exist in the base with the same shape. Pairs of different
    dtypes are both upcast to fp32 (exact), and ``dtype()`` then reports fp32.
    """

    kind = "checkpoint"

    def __init__(self, path: str, *, base: Checkpoint | None, target_names=None, label: str = "forget"):
        self.path = os.fspath(path)
        self.label = label
        if base is None:
            raise SmfaError(
                f"--base is required for checkpoint deltas ({label} {self.path} is a fine-tuned checkpoint; "
                "its delta is it minus the base model)"
            )
        self._base = base
        self._ckpt = _open_delta_checkpoint(self.path, label)
        try:
            own = self._ckpt.names()
            self._base_of = match_names(
                own, base.names(), source_label=f"{label} checkpoint ({self.path})", target_label=f"base ({base.path})"
            )
            for n in own:
                fi, bi = self._ckpt.info(n), base.info(self._base_of[n])
                if tuple(fi.shape) != tuple(bi.shape):
                    raise SmfaError(
                        f"{label} checkpoint {fi.path}: tensor {n!r} has shape {list(fi.shape)} but base tensor "
                        f"{bi.name!r} in {bi.path} has shape {list(bi.shape)}"
                    )
            self._set_names(own, target_names, label)
        except BaseException:
            self._ckpt.close()
            raise
        self._scratch = _Scratch()

    def dtype(self, name: str) -> torch.dtype:
        own = self._own(name)
        dt = self._ckpt.info(own).torch_dtype
        return dt if dt == self._base.info(self._base_of[own]).torch_dtype else torch.float32

    def read(self, name: str, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        own = self._own(name)
        self._check_range(name, start, stop)
        fi = self._ckpt.info(own)
        bname = self._base_of[own]
        bi = self._base.info(bname)
        x = self._ckpt.read_into(own, self._scratch.bytes("x", (stop - start) * fi.itemsize), start, stop)
        xb = self._base.read_into(bname, self._scratch.bytes("xb", (stop - start) * bi.itemsize), start, stop)
        if fi.dtype != bi.dtype:
            return _read_pair_upcast(self._scratch, x, xb)
        return x, xb

    def byte_ranges(self, name: str) -> list[tuple[str, int, int]]:
        own = self._own(name)
        return [self._ckpt.byte_range(own), self._base.byte_range(self._base_of[own])]

    def close(self) -> None:
        self._ckpt.close()
        self._scratch.clear()

