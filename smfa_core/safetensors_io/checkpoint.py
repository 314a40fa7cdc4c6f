"""Checkpoints: one safetensors file, or a directory of shards with its HF-style index."""

from __future__ import annotations

import json
import os
import re

import torch

from ..errors import SmfaError
from .format import TensorInfo, TensorNotFound, _no_duplicates
from .reader import SafetensorsReader

_INDEX_NAMES = ("model.safetensors.index.json",)
_SINGLE_NAMES = ("model.safetensors",)


def _shard_sort_key(name: str) -> tuple:
    # Natural order, so that "model-00002-of-00010" sorts before "model-00010-of-00010".
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name))


class Checkpoint:
    """A set of weights: one ``.safetensors`` file, or a directory holding ``model.safetensors`` or a
    ``*.safetensors.index.json`` plus its shards (or exactly one ``*.safetensors`` file).

    All shard headers are parsed and cross-checked against the index when the checkpoint is opened,
    so a broken or inconsistent checkpoint fails before any work starts.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.index_metadata: dict = {}
        self.index_path: str | None = None
        self.files: list[str] = []
        self._readers: dict[str, SafetensorsReader] = {}
        self._file_of: dict[str, str] = {}
        self._names: list[str] = []
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # -- discovery ---------------------------------------------------------------------------
    def _open(self) -> None:
        p = self.path
        if os.path.isfile(p):
            if p.endswith(".json"):
                self._open_index(os.path.dirname(p) or ".", p)
                return
            self._dir = os.path.dirname(p) or "."
            self._open_files([os.path.basename(p)], None)
            return
        if not os.path.exists(p):
            raise SmfaError(f"{p}: no such file or directory")
        if not os.path.isdir(p):
            raise SmfaError(f"{p}: not a file or directory")
        try:
            entries = sorted(os.listdir(p))
        except OSError as e:
            raise SmfaError(f"{p}: cannot list directory: {e.strerror or e}") from None
        for n in _INDEX_NAMES:
            if n in entries:
                self._open_index(p, os.path.join(p, n))
                return
        indexes = [e for e in entries if e.endswith(".safetensors.index.json")]
        if len(indexes) == 1:
            self._open_index(p, os.path.join(p, indexes[0]))
            return
        if len(indexes) > 1:
            raise SmfaError(f"{p}: several safetensors index files ({', '.join(indexes)}); pass one of them")
        for n in _SINGLE_NAMES:
            if n in entries:
                self._dir = p
                self._open_files([n], None)
                return
        singles = [e for e in entries if e.endswith(".safetensors") and os.path.isfile(os.path.join(p, e))]
        if len(singles) == 1:
            self._dir = p
            self._open_files(singles, None)
            return
        if singles:
            raise SmfaError(
                f"{p}: several .safetensors files ({', '.join(singles[:5])}{', ...' if len(singles) > 5 else ''}) "
                "but no *.safetensors.index.json"
            )
        raise SmfaError(f"{p}: no model.safetensors or *.safetensors.index.json in this directory")

    def _open_index(self, dirpath: str, index_path: str) -> None:
        self._dir = dirpath
        self.index_path = index_path
        try:
            with open(index_path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise SmfaError(f"{index_path}: cannot read: {e.strerror or e}") from None
        try:
            idx = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise SmfaError(f"{index_path}: not a valid JSON index: {e}") from None
        if not isinstance(idx, dict):
            raise SmfaError(f"{index_path}: index is not a JSON object")
        wm = idx.get("weight_map")
        if not isinstance(wm, dict):
            raise SmfaError(
                f"{index_path}: missing or invalid 'weight_map' (must map tensor names to shard files)"
            )
        meta = idx.get("metadata", {})
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise SmfaError(f"{index_path}: 'metadata' is not an object")
        self.index_metadata = meta
        for name, fn in wm.items():
            if not isinstance(fn, str) or not fn:
                raise SmfaError(f"{index_path}: tensor {name!r} maps to an invalid shard file {fn!r}")
            if os.path.isabs(fn) or ".." in fn.replace("\\", "/").split("/"):
                raise SmfaError(
                    f"{index_path}: tensor {name!r} maps to {fn!r}, outside the checkpoint directory"
                )
        files = sorted(set(wm.values()), key=_shard_sort_key)
        for fn in files:
            if not os.path.isfile(os.path.join(dirpath, fn)):
                who = next(n for n, f in wm.items() if f == fn)
                raise SmfaError(
                    f"{index_path}: shard {fn!r} (holding tensor {who!r}) does not exist in {dirpath}"
                )
        self._open_files(files, wm)

    def _open_files(self, files: list[str], weight_map: dict[str, str] | None) -> None:
        self.files = list(files)
        for fn in files:
            r = SafetensorsReader(os.path.join(self._dir, fn))
            self._readers[fn] = r
            for name in r.tensors:
                if weight_map is not None:
                    want = weight_map.get(name)
                    if want is None:
                        raise SmfaError(
                            f"{r.path}: tensor {name!r} is in this shard but not in {self.index_path}"
                        )
                    if want != fn:
                        raise SmfaError(
                            f"{r.path}: tensor {name!r} is in this shard but {self.index_path} places it in {want!r}"
                        )
                elif name in self._file_of:  # pragma: no cover - single file cannot repeat names
                    raise SmfaError(f"{r.path}: tensor {name!r} appears twice")
                self._file_of[name] = fn
                self._names.append(name)
        if weight_map is not None:
            for name, fn in weight_map.items():
                if name not in self._file_of:
                    raise SmfaError(
                        f"{self.index_path}: tensor {name!r} is listed in the index but missing from shard "
                        f"{os.path.join(self._dir, fn)}"
                    )

    # -- access ------------------------------------------------------------------------------
    @property
    def directory(self) -> str:
        """The directory holding the shard files."""
        return self._dir

    def names(self) -> list[str]:
        return list(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._file_of

    def __len__(self) -> int:
        return len(self._names)

    def file_of(self, name: str) -> str:
        try:
            return self._file_of[name]
        except KeyError:
            raise TensorNotFound(f"{self.path}: no tensor named {name!r} in this checkpoint") from None

    def info(self, name: str) -> TensorInfo:
        return self._readers[self.file_of(name)].tensors[name]

    def reader(self, filename: str) -> SafetensorsReader:
        r = self._readers.get(filename)
        if r is None:
            raise SmfaError(f"{self.path}: no shard file named {filename!r} in this checkpoint")
        if r._fd is None:  # closed by someone: reopen (the file is re-validated)
            r = self._readers[filename] = SafetensorsReader(os.path.join(self._dir, filename))
        return r

    def byte_range(self, name: str) -> tuple[str, int, int]:
        """(file path, start byte, end byte) of tensor `name`'s data."""
        ti = self.info(name)
        return ti.path, ti.start, ti.end

    def read_into(
        self, name: str, out: torch.Tensor, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        return self.reader(self.file_of(name)).read_into(name, out, start, stop)

    def read(self, name: str) -> torch.Tensor:
        return self.reader(self.file_of(name)).read(name)

    def metadata(self, filename: str) -> dict[str, str]:
        return dict(self.reader(filename).metadata)

    def close(self) -> None:
        for r in self._readers.values():
            r.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Checkpoint({self.path!r}, {len(self.files)} files, {len(self._names)} tensors)"


def write_index(
    dirpath: str | os.PathLike,
    weight_map: dict[str, str],
    total_size: int,
    *,
    filename: str = "model.safetensors.index.json",
    metadata: dict | None = None,
) -> None:
    """Write a HF-style ``*.safetensors.index.json`` (sorted keys, like ``save_pretrained``) and fsync it.

    ``metadata`` entries (e.g. a base index's metadata) are kept; ``total_size`` always wins.
    """
    meta = dict(metadata or {})
    meta["total_size"] = int(total_size)
    body = json.dumps({"metadata": meta, "weight_map": dict(weight_map)}, indent=2, sort_keys=True) + "\n"
    path = os.path.join(os.fspath(dirpath), filename)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise SmfaError(f"{path}: cannot write index: {e.strerror or e}") from None
