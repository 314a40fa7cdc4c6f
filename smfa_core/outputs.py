"""Output files of the engine: HF-style shard plans, a writer streaming tensors into
pre-planned shards, and the non-weight files copied from the base model."""

from __future__ import annotations

import math
import os
import shutil
from typing import TYPE_CHECKING

import torch

from .safetensors_io import Checkpoint, SafetensorsWriter, write_index

if TYPE_CHECKING:
    from .sources import LoraSource

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")


def copy_base_files(base: Checkpoint, tmp: str) -> None:
    """config, generation config, tokenizer and processor files: everything but weights."""
    if not os.path.isdir(base.path):
        return
    for entry in os.scandir(base.path):
        if entry.is_file() and not entry.name.endswith(WEIGHT_SUFFIXES) \
                and not entry.name.endswith(".index.json") and not entry.name.startswith("."):
            shutil.copy2(entry.path, os.path.join(tmp, entry.name))


_MASKED_README = """# smfa masked adapter

A LoRA adapter sculpted by `smfa sculpt --emit adapter`: the LoRA factors ({weights}, PEFT's
adapter_model.safetensors renamed so that PEFT cannot load it without its mask) and the
bit-packed mask of every delta tensor ({mask}). Masked entries of the delta are zero.

Apply it with smfa, which gives the same bits as `smfa sculpt --emit merged`:

    smfa merge --base BASE_MODEL --delta THIS_DIR --out MERGED_MODEL
    smfa_core.sculpt_model_(model, "THIS_DIR", {{}}, 1.0, missing_anchor="keep")   # in memory
"""


def copy_adapter_files(src: LoraSource, tmp: str) -> None:
    """A masked adapter's LoRA files (`src`: a sources.LoraSource): config and weights byte for
    byte, the weights under MASKED_WEIGHTS, and a README saying how to apply it."""
    from .sources import ADAPTER_CONFIG, MASK_FILE, MASKED_WEIGHTS

    shutil.copy2(os.path.join(src.path, ADAPTER_CONFIG), os.path.join(tmp, ADAPTER_CONFIG))
    shutil.copy2(src.weights_path, os.path.join(tmp, MASKED_WEIGHTS))
    with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
        f.write(_MASKED_README.format(weights=MASKED_WEIGHTS, mask=MASK_FILE))


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




class WriteBehind:
    """Runs output writes in order on one background thread, so that file reads and kernels
    overlap them (a buffered write blocks once the kernel's dirty-page limit is reached).

    Data goes through `depth` reusable byte buffers: `write` copies into one, `acquire` +
    `submit` lets the caller fill one directly. Memory: depth x nbytes. An error in the
    thread is raised again by the next call on the main thread.
    """

    def __init__(self, nbytes: int, depth: int = 3) -> None:
        import queue
        import threading

        self._jobs: queue.Queue = queue.Queue()
        self._free: queue.Queue = queue.Queue()
        for _ in range(depth):
            self._free.put(torch.empty(nbytes, dtype=torch.uint8))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="smfa-write-behind", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, buf = job
            try:
                if self._error is None:
                    fn(*args)
            except BaseException as exc:  # handed to the main thread
                self._error = exc
            finally:
                if buf is not None:
                    self._free.put(buf)
                self._jobs.task_done()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def acquire(self) -> torch.Tensor:
        """A free byte buffer (waits while `depth` writes are pending)."""
        self._check()
        return self._free.get()

    def submit(self, fn, name: str, data: torch.Tensor, buf: torch.Tensor) -> None:
        """fn(name, data) in the thread; `data` lives in `buf`, which is released afterwards."""
        self._jobs.put((fn, (name, data), buf))

    def write(self, fn, name: str, data: torch.Tensor) -> None:
        """fn(name, bytes of data), from a copy: `data`'s buffer can be reused at once."""
        src = data.reshape(-1).view(torch.uint8)
        buf = self.acquire()
        view = buf[: src.numel()]
        view.copy_(src)
        self.submit(fn, name, view, buf)

    def call(self, fn, *args) -> None:
        """fn(*args) in the thread, after the writes queued before it (e.g. a file's close)."""
        self._check()
        self._jobs.put((fn, args, None))

    def drain(self) -> None:
        """Wait for every queued write; raise the first error."""
        self._jobs.join()
        self._check()

    def close(self) -> None:
        """Stop the thread (after what is queued)."""
        self._jobs.put(None)
        self._thread.join()
