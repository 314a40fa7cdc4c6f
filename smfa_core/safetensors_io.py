"""Streaming safetensors I/O: strict header parsing, explicit reads into reused buffers, chunked writes.

Nothing here memory-maps a file. A :class:`SafetensorsReader` holds a file descriptor and reads
byte ranges with ``os.preadv`` straight into the memory of a caller-provided CPU tensor, so peak
memory is whatever buffer the caller chose. A :class:`SafetensorsWriter` computes the whole header
up front (the layout is known before any data exists) and then accepts each tensor's bytes, in
order, in as many chunks as the caller likes.

Validation follows the official ``safetensors`` crate (``Metadata::validate`` and
``SafeTensors::read_metadata``) and is a little stricter where that costs nothing (duplicate JSON
keys, NaN/Infinity literals). Every problem with a file is an :class:`SmfaError` whose message
names the file and, where relevant, the tensor or field.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import re
import stat
import struct
from dataclasses import dataclass
from typing import Any

import torch

from .errors import SmfaError

__all__ = [
    "DTYPES",
    "MAX_HEADER_SIZE",
    "Checkpoint",
    "SafetensorsReader",
    "SafetensorsWriter",
    "TensorInfo",
    "TensorNotFound",
    "dtype_name",
    "itemsize",
    "write_index",
]

#: Same limit as the official crate.
MAX_HEADER_SIZE = 100_000_000
_N_LEN = 8
# Linux caps one read/write at 0x7ffff000 bytes; stay below it so every call can complete.
_MAX_IO = 1 << 30
_I64_MAX = (1 << 63) - 1

_DTYPE_CANDIDATES: list[tuple[str, str]] = [
    ("F64", "float64"),
    ("F32", "float32"),
    ("F16", "float16"),
    ("BF16", "bfloat16"),
    ("I64", "int64"),
    ("I32", "int32"),
    ("I16", "int16"),
    ("I8", "int8"),
    ("U8", "uint8"),
    ("BOOL", "bool"),
    ("U16", "uint16"),
    ("U32", "uint32"),
    ("U64", "uint64"),
    ("F8_E4M3", "float8_e4m3fn"),
    ("F8_E5M2", "float8_e5m2"),
    ("F8_E4M3FNUZ", "float8_e4m3fnuz"),
    ("F8_E5M2FNUZ", "float8_e5m2fnuz"),
    ("F8_E8M0", "float8_e8m0fnu"),
    ("C64", "complex64"),
]

#: safetensors dtype name -> torch dtype, for the dtypes this torch build has.
DTYPES: dict[str, torch.dtype] = {
    name: getattr(torch, attr)
    for name, attr in _DTYPE_CANDIDATES
    if isinstance(getattr(torch, attr, None), torch.dtype)
}
_NAMES: dict[torch.dtype, str] = {dt: name for name, dt in DTYPES.items()}
_ITEMSIZE: dict[str, int] = {name: torch.empty((), dtype=dt).element_size() for name, dt in DTYPES.items()}


class TensorNotFound(SmfaError, KeyError):
    """No tensor of that name (an SmfaError naming the file/checkpoint, and a KeyError)."""

    __str__ = Exception.__str__


def dtype_name(dt: torch.dtype) -> str:
    """The safetensors name of a torch dtype ("BF16" for torch.bfloat16)."""
    try:
        return _NAMES[dt]
    except (KeyError, TypeError):
        raise SmfaError(f"dtype {dt} cannot be stored in safetensors") from None


def itemsize(name: str) -> int:
    """Bytes per element of a safetensors dtype name."""
    try:
        return _ITEMSIZE[name]
    except (KeyError, TypeError):
        raise SmfaError(f"unknown safetensors dtype {name!r}") from None


def _norm_dtype(dt: str | torch.dtype) -> str:
    if isinstance(dt, torch.dtype):
        return dtype_name(dt)
    if isinstance(dt, str) and dt in DTYPES:
        return dt
    raise SmfaError(f"unknown safetensors dtype {dt!r}")


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: ``start``/``end`` are absolute byte offsets in ``path``."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int
    path: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def itemsize(self) -> int:
        return _ITEMSIZE[self.dtype]


# --------------------------------------------------------------------------------------------
# raw buffer helpers


def _byte_view(t: torch.Tensor, what: str) -> torch.Tensor:
    """A flat uint8 view of a contiguous CPU tensor's memory."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{what} must be a CPU tensor, got device {t.device}")
    if not t.is_contiguous():
        raise ValueError(f"{what} must be contiguous")
    flat = t.detach().reshape(-1)
    return flat if flat.dtype == torch.uint8 else flat.view(torch.uint8)


def _memview(u8: torch.Tensor) -> memoryview:
    """A writable memoryview over a contiguous uint8 CPU tensor (no copy)."""
    n = u8.numel()
    if n == 0:
        return memoryview(bytearray(0))
    return memoryview((ctypes.c_char * n).from_address(u8.data_ptr())).cast("B")


def _pread_full(fd: int, mv: memoryview, offset: int) -> int:
    """Fill ``mv`` from ``fd`` at ``offset``; returns the number of bytes read (short only at EOF)."""
    done = 0
    total = len(mv)
    while done < total:
        chunk = mv[done : done + _MAX_IO]
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [chunk], offset + done)
        else:  # pragma: no cover - non-Linux fallback
            os.lseek(fd, offset + done, os.SEEK_SET)
            with open(fd, "rb", buffering=0, closefd=False) as f:
                n = f.readinto(chunk)
        if not n:
            break
        done += n
    return done


# --------------------------------------------------------------------------------------------
# reader


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON literal {name}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class SafetensorsReader:
    """An open, validated safetensors file. Holds a file descriptor; never maps the file."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.metadata: dict[str, str] = {}
        self.tensors: dict[str, TensorInfo] = {}
        self._fd: int | None = None
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except IsADirectoryError:
            raise SmfaError(f"{self.path}: is a directory, not a safetensors file") from None
        except OSError as e:
            raise SmfaError(f"{self.path}: cannot open: {e.strerror or e}") from None
        self._fd = fd
        try:
            self._parse()
        except BaseException:
            self.close()
            raise

    # -- parsing ---------------------------------------------------------------------------
    def _err(self, msg: str) -> SmfaError:
        return SmfaError(f"{self.path}: invalid safetensors file: {msg}")

    def _parse(self) -> None:
        fd = self._fd
        assert fd is not None
        try:
            st = os.fstat(fd)
        except OSError as e:  # pragma: no cover
            raise SmfaError(f"{self.path}: cannot stat: {e.strerror or e}") from None
        if not stat.S_ISREG(st.st_mode):
            raise self._err("not a regular file")
        size = st.st_size
        self.file_size = size
        if size < _N_LEN:
            raise self._err(f"file is {size} bytes, shorter than the 8-byte header length")
        head = bytearray(_N_LEN)
        if _pread_full(fd, memoryview(head), 0) != _N_LEN:
            raise self._err("could not read the header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_SIZE:
            raise self._err(f"header length {n} exceeds the limit of {MAX_HEADER_SIZE} bytes")
        if _N_LEN + n > size:
            raise self._err(f"header length {n} runs past the end of the file ({size} bytes)")
        raw = bytearray(n)
        if _pread_full(fd, memoryview(raw), _N_LEN) != n:
            raise self._err("file shrank while reading the header")
        self.header_size = n
        self.data_start = _N_LEN + n
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self._err(f"header is not valid UTF-8 (byte {e.start})") from None
        try:
            header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
        except RecursionError:
            raise self._err("header JSON is nested too deeply") from None
        except ValueError as e:  # JSONDecodeError, duplicate keys, NaN, huge int literals
            raise self._err(f"header is not valid JSON: {e}") from None
        if not isinstance(header, dict):
            raise self._err("header JSON is not an object")

        meta = header.pop("__metadata__", None)
        if meta is not None:
            if not isinstance(meta, dict):
                raise self._err("field '__metadata__' is not an object of string -> string")
            for k, v in meta.items():
                if not isinstance(v, str):
                    raise self._err(f"field '__metadata__' entry {k!r} is not a string")
            self.metadata = dict(meta)

        entries: list[tuple[int, int, int, str, str, tuple[int, ...]]] = []
        data_len = size - self.data_start
        for order, (name, entry) in enumerate(header.items()):
            if not isinstance(entry, dict):
                raise self._err(f"tensor {name!r}: entry is not an object")
            for field in ("dtype", "shape", "data_offsets"):
                if field not in entry:
                    raise self._err(f"tensor {name!r}: missing field {field!r}")
            dt = entry["dtype"]
            if not isinstance(dt, str) or dt not in DTYPES:
                raise self._err(f"tensor {name!r}: unsupported dtype {dt!r}")
            shape = entry["shape"]
            if not isinstance(shape, list):
                raise self._err(f"tensor {name!r}: shape is not a list")
            for d in shape:
                if not _is_int(d) or d < 0 or d > _I64_MAX:
                    raise self._err(f"tensor {name!r}: shape {shape!r} has an invalid dimension {d!r}")
            offs = entry["data_offsets"]
            if (
                not isinstance(offs, list)
                or len(offs) != 2
                or not all(_is_int(o) for o in offs)
                or offs[0] < 0
                or offs[1] < offs[0]
            ):
                raise self._err(
                    f"tensor {name!r}: data_offsets {offs!r} are not [begin, end] with 0 <= begin <= end"
                )
            b, e = offs
            if e > data_len:
                raise self._err(
                    f"tensor {name!r}: data_offsets {offs!r} run past the end of the data ({data_len} bytes)"
                )
            isz = _ITEMSIZE[dt]
            # numel * itemsize, bailing out as soon as it is absurd (the header may be hostile).
            if 0 in shape:
                nbytes = 0
            else:
                nbytes = isz
                for d in shape:
                    nbytes *= d
                    if nbytes > data_len:
                        break
            if nbytes != e - b:
                shown = f"{nbytes}" if nbytes <= data_len else f"more than {data_len}"
                raise self._err(
                    f"tensor {name!r}: shape {shape} with dtype {dt} needs {shown} bytes but data_offsets "
                    f"{offs} span {e - b}"
                )
            entries.append((b, e, order, name, dt, tuple(shape)))

        entries.sort()
        pos = 0
        prev: str | None = None
        for b, e, _order, name, _dt, _shape in entries:
            if b != pos:
                where = (
                    f"after tensor {prev!r} ends at {pos}" if prev is not None else "the data must start at 0"
                )
                kind = "overlaps the previous tensor" if b < pos else "leaves a gap"
                raise self._err(f"tensor {name!r}: data_offsets start at {b}; {kind} ({where})")
            pos = e
            prev = name
        if pos != data_len:
            if pos < data_len:
                raise self._err(
                    f"{data_len - pos} trailing bytes after the last tensor (data is {data_len} bytes, "
                    f"tensors cover {pos})"
                )
            raise self._err(
                f"tensors cover {pos} data bytes but the file has only {data_len}"
            )  # pragma: no cover
        base = self.data_start
        self.tensors = {
            name: TensorInfo(name, dt, shape, base + b, base + e, self.path)
            for b, e, _o, name, dt, shape in entries
        }

    # -- access ----------------------------------------------------------------------------
    def __enter__(self) -> SafetensorsReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"SafetensorsReader({self.path!r}, {len(self.tensors)} tensors)"

    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise TensorNotFound(f"{self.path}: no tensor named {name!r}") from None

    def _fd_or_raise(self) -> int:
        if self._fd is None:
            raise SmfaError(f"{self.path}: reader is closed")
        return self._fd

    def read_bytes_into(
        self, name: str, out_u8: torch.Tensor, byte_start: int, byte_stop: int
    ) -> torch.Tensor:
        """Read bytes ``[byte_start, byte_stop)`` of tensor ``name`` into the front of ``out_u8``.

        Returns a uint8 view of ``out_u8`` holding exactly those bytes.
        """
        ti = self.info(name)
        if not (0 <= byte_start <= byte_stop <= ti.nbytes):
            raise SmfaError(
                f"{self.path}: tensor {name!r}: byte range [{byte_start}, {byte_stop}) is outside [0, {ti.nbytes})"
            )
        buf = _byte_view(out_u8, "out")
        n = byte_stop - byte_start
        if buf.numel() < n:
            raise ValueError(f"output buffer has {buf.numel()} bytes, {n} needed to read tensor {name!r}")
        dst = buf[:n]
        if n:
            got = _pread_full(self._fd_or_raise(), _memview(dst), ti.start + byte_start)
            if got != n:
                raise SmfaError(
                    f"{self.path}: tensor {name!r}: file was truncated while reading "
                    f"(got {got} of {n} bytes at offset {ti.start + byte_start})"
                )
        return dst

    def read_into(
        self, name: str, out: torch.Tensor, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        """Read flattened elements ``[start, stop)`` of ``name`` into the front of ``out``.

        ``out`` is any contiguous CPU tensor with enough bytes (a reused uint8 buffer, or a tensor of
        the right dtype). Returns a 1-D view of ``out`` with the tensor's dtype and ``stop - start``
        elements.
        """
        ti = self.info(name)
        numel = ti.numel
        if stop is None:
            stop = numel
        if not (0 <= start <= stop <= numel):
            raise SmfaError(
                f"{self.path}: tensor {name!r}: element range [{start}, {stop}) is outside [0, {numel})"
            )
        isz = ti.itemsize
        dst = self.read_bytes_into(name, out, start * isz, stop * isz)
        try:
            return dst.view(ti.torch_dtype)
        except RuntimeError as e:
            raise ValueError(
                f"output buffer is not aligned for {ti.dtype} (storage offset must be a multiple of {isz}): {e}"
            ) from None

    def read(self, name: str) -> torch.Tensor:
        """The whole tensor, in a fresh CPU tensor of its shape and dtype."""
        ti = self.info(name)
        try:
            out = torch.empty(ti.shape, dtype=ti.torch_dtype)
        except (RuntimeError, ValueError, OverflowError) as e:
            raise SmfaError(
                f"{self.path}: tensor {name!r}: cannot allocate shape {list(ti.shape)}: {e}"
            ) from None
        self.read_into(name, out)
        return out

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


# --------------------------------------------------------------------------------------------
# writer


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


# --------------------------------------------------------------------------------------------
# checkpoints (single file or sharded directory)

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
