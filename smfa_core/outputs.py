"""Output files of the engine: HF-style shard plans, a writer streaming tensors into
pre-planned shards, and the non-weight files copied from the base model."""

from __future__ import annotations

import math
import os
import shutil

import torch

from .safetensors_io import Checkpoint, SafetensorsWriter, write_index

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")


def copy_base_files(base: Checkpoint, tmp: str) -> None:
    """config, generation config, tokenizer and processor files: everything but weights."""
    if not os.path.isdir(base.path):
        return
    for entry in os.scandir(base.path):
        if entry.is_file() and not entry.name.endswith(WEIGHT_SUFFIXES) \
                and not entry.name.endswith(".index.json") and not entry.name.startswith("."):
            shutil.copy2(entry.path, os.path.join(tmp, entry.name))


def shard_plan(entries: list[tuple[str, torch.dtype, tuple[int, ...]]], stem: str,
                max_bytes: int) -> list[tuple[str, list[tuple[str, torch.dtype, tuple[int, ...]]]]]:
    """Split (name, dtype, shape) entries into shards of at most max_bytes (HF naming)."""
    shards: list[list] = [[]]
    size = 0
    for ent in entries:
        nbytes = math.prod(ent[2]) * torch.empty((), dtype=ent[1]).element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(ent)
        size += nbytes
    if len(shards) == 1:
        return [(f"{stem}.safetensors", shards[0])]
    n = len(shards)
    return [(f"{stem}-{i + 1:05d}-of-{n:05d}.safetensors", s) for i, s in enumerate(shards)]


class ShardedWriter:
    """Writes tensors in a fixed order across pre-planned shard files (+ index if > 1)."""

    def __init__(self, dirpath: str, plan, metadata: dict[str, str] | None = None) -> None:
        self.dirpath = dirpath
        self.plan = plan
        self.metadata = metadata
        self.file_of = {name: fn for fn, ents in plan for name, _, _ in ents}
        self._open: tuple[str, SafetensorsWriter] | None = None
        self.bytes_written = 0

    def _writer(self, name: str) -> SafetensorsWriter:
        fn = self.file_of[name]
        if self._open is None or self._open[0] != fn:
            if self._open is not None:
                self._open[1].close()
            ents = next(e for f, e in self.plan if f == fn)
            w = SafetensorsWriter(os.path.join(self.dirpath, fn), [(n, dt, s) for n, dt, s in ents],
                                  metadata=self.metadata)
            self._open = (fn, w)
        return self._open[1]

    def write(self, name: str, data: torch.Tensor) -> None:
        self._writer(name).write(name, data)
        self.bytes_written += data.numel() * data.element_size()

    def close(self, index_name: str | None) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None
        if index_name and len(self.plan) > 1:
            total = sum(math.prod(s) * torch.empty((), dtype=dt).element_size()
                        for _, ents in self.plan for _, dt, s in ents)
            write_index(self.dirpath, dict(self.file_of), total, filename=index_name)


