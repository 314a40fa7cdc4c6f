"""Dense delta safetensors (a file or a directory of shards) as a delta source, and the
file-backed base the checkpoint source shares with it."""

from __future__ import annotations

import os

import torch

from ..errors import SmfaError
from ..safetensors_io import Checkpoint
from .base import ADAPTER_CONFIG, DeltaSource, _map_onto, _Scratch
from .lora_config import _RE_EMBED, _RE_LINEAR


class _FileSource(DeltaSource):
    """A source whose tensors are those of one checkpoint of its own (`self._ckpt`), seen
    under canonical names."""

    _ckpt: Checkpoint

    def _set_names(self, own: list[str], target_names, label: str) -> None:
        mapping = _map_onto(own, target_names, label, self.path, "the target tensors")
        self._orig = {mapping[n]: n for n in own}
        self._names = [mapping[n] for n in own]

    def names(self) -> list[str]:
        return list(self._names)

    def _own(self, name: str) -> str:
        try:
            return self._orig[name]
        except KeyError:
            raise self._unknown(name) from None

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._ckpt.info(self._own(name)).shape)


class DenseDeltaSource(_FileSource):
    """Dense delta safetensors: a file, or a directory of shards (index.json or *.safetensors)."""

    kind = "delta"

    def __init__(self, path: str, *, target_names=None, label: str = "forget", detected: bool = False):
        self.path = os.fspath(path)
        self.label = label
        self._ckpt = _open_delta_checkpoint(self.path, label)
        try:
            own = self._ckpt.names()
            if detected:  # the kind was guessed: LoRA factors mean a missing adapter config
                _refuse_lora_factors(self.path, own, label)
            self._set_names(own, target_names, label)
        except BaseException:
            self._ckpt.close()
            raise
        self._scratch = _Scratch()

    def dtype(self, name: str) -> torch.dtype:
        return self._ckpt.info(self._own(name)).torch_dtype

    def read(self, name: str, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        own = self._own(name)
        self._check_range(name, start, stop)
        info = self._ckpt.info(own)
        buf = self._scratch.bytes("x", (stop - start) * info.itemsize)
        return self._ckpt.read_into(own, buf, start, stop), None

    def byte_ranges(self, name: str) -> list[tuple[str, int, int]]:
        return [self._ckpt.byte_range(self._own(name))]

    def close(self) -> None:
        self._ckpt.close()
        self._scratch.clear()


def _refuse_lora_factors(path: str, names: list[str], label: str) -> None:
    """lora_A/lora_B factors are not a ΔW: detected as a dense delta (no adapter config next
    to them), they would be sculpted as garbage. An explicit kind "delta" still reads them."""
    factor = next((n for n in names if _RE_LINEAR.match(n) or _RE_EMBED.match(n)), None)
    if factor is not None:
        raise SmfaError(f"{label} delta {path}: tensor {factor!r} is a LoRA factor, but there is no "
                        f"{ADAPTER_CONFIG} next to it; put the adapter's {ADAPTER_CONFIG} in the directory "
                        "(a PEFT adapter dir), not just its weights, or pass the kind delta explicitly")


def _open_delta_checkpoint(path: str, label: str) -> Checkpoint:
    if not os.path.exists(path):
        raise SmfaError(f"{label} delta {path}: no such file or directory")
    try:
        return Checkpoint(path)
    except SmfaError as e:
        raise SmfaError(f"{label} delta: {e}") from None

