"""What a sculpt run reads and checks before any output exists: chunking, the tensors to
sculpt (`plan_items`), the opened inputs, the norms pass, and the finite-output check."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ._ops import BLOCK
from .errors import SmfaError
from .names import match_names
from .placement import Placement
from .safetensors_io import Checkpoint
from .sources import DeltaSource, open_source
from .tensor_api import FLOAT_DTYPES, exact_sum

if TYPE_CHECKING:
    from types import ModuleType

    from tqdm import tqdm

MAX_CHUNK_MB = 16384  # fp32-equivalent MiB; the engine streams, no model needs larger chunks


def chunk_elems(chunk_mb: float) -> int:
    """Elements per chunk: chunk_mb of fp32, rounded down to whole norm blocks (>= 1)."""
    if not (0 < chunk_mb <= MAX_CHUNK_MB):  # also NaN and inf
        raise SmfaError(f"--chunk-mb must be in (0, {MAX_CHUNK_MB}], got {chunk_mb}")
    n = int(chunk_mb * 2**20) // 4
    return max(BLOCK, n // BLOCK * BLOCK)


def chunk_ranges(numel: int, step: int) -> Iterator[tuple[int, int]]:
    """[start, stop) element ranges of `step` covering [0, numel), the last one short."""
    for s in range(0, numel, step):
        yield s, min(numel, s + step)



@dataclass
class _Item:
    """One tensor to sculpt: its name, shape, and what it reads from."""

    name: str
    shape: tuple[int, ...]
    numel: int
    has_anchor: bool
    ss_f: float = 0.0
    ss_a: float = 0.0
    k: float | None = None  # this tensor's k (the run's k, or the k rule it matched)


def progress_bar(total: int, enabled: bool, desc: str) -> tqdm:  # a tqdm bar (imported lazily)
    """A byte-counting tqdm bar (disabled: it still counts `bytes_read` for the report)."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not enabled, leave=False)
    bar.bytes_read = 0  # what the run read, for the report
    return bar


def _check_float(src_label: str, path: str, name: str, dtype: torch.dtype) -> None:
    if dtype not in FLOAT_DTYPES:
        raise SmfaError(f"{path}: tensor {name!r} of the {src_label} has dtype {dtype}, "
                        "not a floating type smfa can sculpt (bf16, fp16, fp32)")


def plan_items(fsrc: DeltaSource, asrc: DeltaSource | None, base: Checkpoint | None,
               missing_anchor: str) -> list[_Item]:
    """Validate everything that can be validated before any output exists."""
    anchor_names = set(asrc.names()) if asrc is not None else set()
    base_names = set(base.names()) if base is not None else set()
    items = []
    for name in fsrc.names():
        shape = tuple(fsrc.shape(name))
        _check_float("forget delta", fsrc.path, name, fsrc.dtype(name))
        has_anchor = False
        if asrc is not None:
            if name in anchor_names:
                has_anchor = True
                ashape = tuple(asrc.shape(name))
                if ashape != shape:
                    raise SmfaError(f"tensor {name!r}: shape {list(shape)} in the forget delta "
                                    f"({fsrc.path}) but {list(ashape)} in the anchor ({asrc.path})")
                _check_float("anchor delta", asrc.path, name, asrc.dtype(name))
            elif missing_anchor != "keep":
                raise SmfaError(f"tensor {name!r} of the forget delta ({fsrc.path}) is missing from the "
                                f"anchor ({asrc.path}); pass --missing-anchor keep to keep it unmasked")
        if base is not None:
            if name not in base_names:
                raise SmfaError(f"tensor {name!r} of the delta is not in the base checkpoint {base.path}")
            info = base.info(name)
            if tuple(info.shape) != shape:
                raise SmfaError(f"tensor {name!r}: shape {list(shape)} in the delta ({fsrc.path}) but "
                                f"{list(info.shape)} in the base ({base.path})")
            _check_float("base", base.path, name, info.torch_dtype)
        items.append(_Item(name, shape, math.prod(shape), has_anchor))
    if not items:
        raise SmfaError(f"the forget delta {fsrc.path} holds no tensors")
    return items


def tensor_sumsq(src: DeltaSource, item: _Item, be: ModuleType, step: int, label: str, bar: tqdm,
                 pl: Placement) -> float:
    """Sum of squares of one tensor's delta, block sums combined exactly (SmfaError if not finite)."""
    sums = []
    for i, (s, e) in enumerate(chunk_ranges(item.numel, step)):
        slot = i % pl.depth
        pl.sync(slot)  # the slot's staging buffers are free again
        x, xb = src.read(item.name, s, e)
        sums.append(be.sumsq_blocks(pl.put(slot, "x", x), pl.put(slot, "xb", xb)))
        pl.record(slot)
        nbytes = (e - s) * x.element_size() * (1 if xb is None else 2)
        bar.update(nbytes)
        bar.bytes_read += nbytes
    total = exact_sum(torch.cat(sums)) if sums else 0.0
    if not math.isfinite(total):
        raise SmfaError(f"tensor {item.name!r} of the {label} delta ({src.path}) has NaN or Inf values")
    return total


def check_finite(name: str, checks: list[tuple[str, torch.Tensor]]) -> None:
    """Raise naming `name` when a written chunk holds NaN or Inf: `checks` pairs each output
    with the counts of the sculpt_chunk call that wrote it, whose third entry is the number
    of non-finite values it wrote (counted in the kernel's own pass: no extra read)."""
    for what, counts in checks:
        if int(counts[2]):
            why = ("NaN/Inf in the delta or the base, or base + delta overflows the base dtype"
                   if what.startswith("merged") else "NaN/Inf in the inputs, or a --delta-dtype it overflows")
            raise SmfaError(f"tensor {name!r}: the {what} has NaN or Inf values ({why}); nothing was "
                            "written. Pass --allow-nonfinite to write it anyway")


def open_inputs(forget: str, anchor: str | None, base: str | None, forget_kind: str,
                 anchor_kind: str) -> tuple[DeltaSource, DeltaSource | None, Checkpoint | None]:
    """(forget, anchor, base) opened; without a base the anchor is paired by the forget's names."""
    for label, p in (("--forget", forget), ("--anchor", anchor), ("--base", base)):
        if p is not None and not os.path.exists(p):
            raise SmfaError(f"{label} {p}: no such file or directory")
    base_ckpt = _LastChunk(Checkpoint(base)) if base is not None else None
    targets = base_ckpt.names() if base_ckpt is not None else None
    fsrc = open_source(forget, kind=forget_kind, base=base_ckpt, target_names=targets, label="forget")
    asrc = None
    if anchor is not None:
        asrc = open_source(anchor, kind=anchor_kind, base=base_ckpt, target_names=targets, label="anchor")
        if targets is None:  # no base: pair the anchor's tensors with the forget delta's names
            pairs = match_names(fsrc.names(), asrc.names(), source_label=f"forget ({forget})",
                                target_label=f"anchor ({anchor})", strict=False)
            asrc = _Renamed(asrc, pairs)
    return fsrc, asrc, base_ckpt


class _LastChunk:
    """The base checkpoint, remembering its last chunk: the forget pair, the anchor pair and
    the merge all read the same base chunk, from one read. Everything else is delegated."""

    def __init__(self, ckpt: Checkpoint) -> None:
        self._ckpt = ckpt
        self._key: tuple[str, int, int] | None = None
        self._buf = torch.empty(0, dtype=torch.uint8)
        self._view: torch.Tensor | None = None

    def __getattr__(self, attr: str):
        return getattr(self._ckpt, attr)

    def read_into(self, name: str, out: torch.Tensor | None, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Elements [start, stop) of `name`, in this object's own buffer (`out` is not used):
        valid until a read of another chunk."""
        stop = self._ckpt.info(name).numel if stop is None else stop
        if self._key != (name, start, stop):
            nbytes = (stop - start) * self._ckpt.info(name).itemsize
            if self._buf.numel() < nbytes:
                self._buf = torch.empty(nbytes, dtype=torch.uint8)
            self._view = self._ckpt.read_into(name, self._buf, start, stop)
            self._key = (name, start, stop)
        return self._view


class _Renamed(DeltaSource):
    """A source seen under other names (forget name -> the source's own name)."""

    def __init__(self, src: DeltaSource, names: dict[str, str]) -> None:
        self._src, self._own = src, names
        self.path, self.kind = src.path, src.kind

    def names(self) -> list[str]:
        return list(self._own)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._src.shape(self._own[name])

    def dtype(self, name: str) -> torch.dtype:
        return self._src.dtype(self._own[name])

    def read(self, name: str, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self._src.read(self._own[name], start, stop)

    def compute_on(self, device: torch.device | str) -> None:
        if hasattr(self._src, "compute_on"):
            self._src.compute_on(device)

    def close(self) -> None:
        self._src.close()

