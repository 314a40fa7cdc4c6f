"""Writing safetensors files: the whole header is computed up front (the layout is known before
any data exists), then each tensor's bytes are accepted, in order, in as many chunks as the
caller likes."""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Any

import torch

from ..errors import SmfaError
from .format import _I64_MAX, _ITEMSIZE, _MAX_IO, _N_LEN, DTYPES, MAX_HEADER_SIZE, _is_int, _norm_dtype
from .reader import _memview


def _data_view(data: torch.Tensor | bytes | bytearray | memoryview, declared: str, name: str, path: str):
    """A read-only bytes-like view of ``data`` (no copy for contiguous CPU tensors)."""
    if isinstance(data, torch.Tensor):
        if data.dtype != DTYPES[declared] and data.dtype != torch.uint8:
            raise SmfaError(
                f"{path}: tensor {name!r} is declared {declared} but data has dtype {data.dtype} "
                f"(pass {DTYPES[declared]} or raw uint8 bytes)"
            )
        t = data.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if not t.is_contiguous():
            t = t.contiguous()
        u8 = t.reshape(-1)
        if u8.dtype != torch.uint8:
            u8 = u8.view(torch.uint8)
        return _memview(u8), u8  # keep the tensor alive while the view is used
    if isinstance(data, (bytes, bytearray, memoryview)):
        mv = memoryview(data)
        if not mv.contiguous:
            mv = memoryview(mv.tobytes())
        return mv.cast("B"), None
    raise TypeError(
        f"data for tensor {name!r} must be a tensor, bytes or memoryview, got {type(data).__name__}"
    )


class SafetensorsWriter:
    """Writes one safetensors file: the header first, then each tensor's bytes in declared order."""

    def __init__(
        self,
        path: str | os.PathLike,
        tensors: list[tuple[str, str | torch.dtype, tuple[int, ...]]],
        metadata: dict[str, str] | None = None,
    ):
        self.path = os.fspath(path)
        self._f = None
        meta = {"format": "pt"}
        if metadata:
            for k, v in metadata.items():
                if not isinstance(k, str) or not isinstance(v, str):
                    raise SmfaError(f"{self.path}: metadata must map str -> str, got {k!r}: {v!r}")
            meta.update(metadata)
        names: list[str] = []
        sizes: list[int] = []
        dtypes: list[str] = []
        header: dict[str, Any] = {"__metadata__": meta}
        pos = 0
        for entry in tensors:
            name, dt, shape = entry
            if not isinstance(name, str) or name == "__metadata__":
                raise SmfaError(f"{self.path}: invalid tensor name {name!r}")
            if name in header:
                raise SmfaError(f"{self.path}: tensor {name!r} is declared twice")
            dts = _norm_dtype(dt)
            shp = tuple(shape)
            if not all(_is_int(d) and 0 <= d <= _I64_MAX for d in shp):
                raise SmfaError(f"{self.path}: tensor {name!r}: invalid shape {shp!r}")
            nbytes = math.prod(shp) * _ITEMSIZE[dts]
            header[name] = {"dtype": dts, "shape": list(shp), "data_offsets": [pos, pos + nbytes]}
            pos += nbytes
            names.append(name)
            sizes.append(nbytes)
            dtypes.append(dts)
        hb = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        hb += b" " * ((-len(hb)) % 8)
        if len(hb) > MAX_HEADER_SIZE:
            raise SmfaError(f"{self.path}: header would be {len(hb)} bytes, over the {MAX_HEADER_SIZE} limit")
        self.header_size = len(hb)
        self.data_size = pos
        self.total_size = _N_LEN + len(hb) + pos
        self._names = names
        self._sizes = sizes
        self._dtype_list = dtypes
        self._index = {n: i for i, n in enumerate(names)}
        self._written = [0] * len(names)
        self._cur = 0
        try:
            self._f = open(self.path, "wb", buffering=0)  # closed in close()/abort()
        except OSError as e:
            raise SmfaError(f"{self.path}: cannot create: {e.strerror or e}") from None
        self._write_raw(memoryview(struct.pack("<Q", len(hb)) + hb))

    def _write_raw(self, mv: memoryview) -> None:
        f = self._f
        assert f is not None
        done, total = 0, len(mv)
        try:
            while done < total:
                n = f.write(mv[done : done + _MAX_IO])
                if not n:
                    raise OSError("short write")
                done += n
        except OSError as e:
            raise SmfaError(f"{self.path}: write failed: {e.strerror or e}") from None

    def write(self, name: str, data: torch.Tensor | bytes | memoryview) -> None:
        """Append the next bytes of tensor ``name``; may be called repeatedly per tensor (chunks)."""
        if self._f is None:
            raise SmfaError(f"{self.path}: writer is closed")
        idx = self._index.get(name)
        if idx is None:
            raise SmfaError(f"{self.path}: tensor {name!r} was not declared in the header")
        # Skip over tensors that are already complete (including zero-size ones).
        while (
            self._cur < len(self._names)
            and self._cur != idx
            and self._written[self._cur] == self._sizes[self._cur]
        ):
            self._cur += 1
        if idx != self._cur:
            if idx < self._cur:
                raise SmfaError(
                    f"{self.path}: tensor {name!r} was already written; now expecting "
                    + (
                        f"tensor {self._names[self._cur]!r}"
                        if self._cur < len(self._names)
                        else "nothing more"
                    )
                )
            cur = self._names[self._cur]
            raise SmfaError(
                f"{self.path}: got data for tensor {name!r} but tensor {cur!r} is incomplete "
                f"({self._written[self._cur]} of {self._sizes[self._cur]} bytes written); tensors must be "
                "written in declared order"
            )
        mv, _keep = _data_view(data, self._dtype_list[idx], name, self.path)
        n = len(mv)
        have, need = self._written[idx], self._sizes[idx]
        if have + n > need:
            raise SmfaError(
                f"{self.path}: too many bytes for tensor {name!r}: {have} written + {n} given > {need} declared"
            )
        if n:
            self._write_raw(mv)
            self._written[idx] = have + n

    def remaining(self, name: str) -> int:
        """Bytes still expected for tensor ``name``."""
        idx = self._index[name]
        return self._sizes[idx] - self._written[idx]

    def close(self) -> None:
        """Check every tensor is complete, then flush, fsync and close. Idempotent."""
        f = self._f
        if f is None:
            return
        try:
            for i, name in enumerate(self._names):
                if self._written[i] != self._sizes[i]:
                    raise SmfaError(
                        f"{self.path}: tensor {name!r} is incomplete: {self._written[i]} of {self._sizes[i]} "
                        "bytes written"
                    )
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                raise SmfaError(f"{self.path}: cannot flush: {e.strerror or e}") from None
        finally:
            self._f = None
            f.close()

    def abort(self) -> None:
        """Close the file without checks (it stays incomplete; the caller removes it)."""
        f, self._f = self._f, None
        if f is not None:
            f.close()

    def __enter__(self) -> SafetensorsWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        try:
            self.abort()
        except Exception:
            pass
