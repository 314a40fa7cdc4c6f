"""The safetensors format: dtype names and sizes, where a tensor lives (`TensorInfo`), and the
strict validation of a header (`parse_header`).

Validation follows the official ``safetensors`` crate (``Metadata::validate`` and
``SafeTensors::read_metadata``) and is a little stricter where that costs nothing (duplicate JSON
keys, NaN/Infinity literals). Every problem is an :class:`SmfaError` naming the file and, where
relevant, the tensor or field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SmfaError

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


Err = Callable[[str], SmfaError]


def decode_header(raw: bytes | bytearray, err: Err) -> dict[str, Any]:
    """The header bytes as a JSON object: UTF-8, no duplicate keys, no NaN/Infinity literals."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise err(f"header is not valid UTF-8 (byte {e.start})") from None
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except RecursionError:
        raise err("header JSON is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, duplicate keys, NaN, huge int literals
        raise err(f"header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise err("header JSON is not an object")
    return header


def pop_metadata(header: dict[str, Any], err: Err) -> dict[str, str]:
    """Remove and check the ``__metadata__`` entry (an object of string -> string)."""
    meta = header.pop("__metadata__", None)
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise err("field '__metadata__' is not an object of string -> string")
    for k, v in meta.items():
        if not isinstance(v, str):
            raise err(f"field '__metadata__' entry {k!r} is not a string")
    return dict(meta)


def _entry_bytes(isz: int, shape: list[int], data_len: int) -> int:
    """numel * itemsize, bailing out as soon as it is absurd (the header may be hostile)."""
    if 0 in shape:
        return 0
    nbytes = isz
    for d in shape:
        nbytes *= d
        if nbytes > data_len:
            break
    return nbytes


def check_entry(name: str, entry: Any, data_len: int, err: Err) -> tuple[int, int, str, tuple[int, ...]]:
    """One tensor's entry validated: (begin, end, dtype, shape), offsets relative to the data."""
    if not isinstance(entry, dict):
        raise err(f"tensor {name!r}: entry is not an object")
    for field in ("dtype", "shape", "data_offsets"):
        if field not in entry:
            raise err(f"tensor {name!r}: missing field {field!r}")
    dt = entry["dtype"]
    if not isinstance(dt, str) or dt not in DTYPES:
        raise err(f"tensor {name!r}: unsupported dtype {dt!r}")
    shape = entry["shape"]
    if not isinstance(shape, list):
        raise err(f"tensor {name!r}: shape is not a list")
    for d in shape:
        if not _is_int(d) or d < 0 or d > _I64_MAX:
            raise err(f"tensor {name!r}: shape {shape!r} has an invalid dimension {d!r}")
    offs = entry["data_offsets"]
    if (
        not isinstance(offs, list)
        or len(offs) != 2
        or not all(_is_int(o) for o in offs)
        or offs[0] < 0
        or offs[1] < offs[0]
    ):
        raise err(f"tensor {name!r}: data_offsets {offs!r} are not [begin, end] with 0 <= begin <= end")
    b, e = offs
    if e > data_len:
        raise err(f"tensor {name!r}: data_offsets {offs!r} run past the end of the data ({data_len} bytes)")
    nbytes = _entry_bytes(_ITEMSIZE[dt], shape, data_len)
    if nbytes != e - b:
        shown = f"{nbytes}" if nbytes <= data_len else f"more than {data_len}"
        raise err(
            f"tensor {name!r}: shape {shape} with dtype {dt} needs {shown} bytes but data_offsets "
            f"{offs} span {e - b}"
        )
    return b, e, dt, tuple(shape)


def check_layout(entries: list[tuple[int, int, int, str, str, tuple[int, ...]]], data_len: int, err: Err) -> None:
    """The tensors, sorted by offset, tile the data exactly: no gap, no overlap, no trailing bytes."""
    pos = 0
    prev: str | None = None
    for b, e, _order, name, _dt, _shape in entries:
        if b != pos:
            where = f"after tensor {prev!r} ends at {pos}" if prev is not None else "the data must start at 0"
            kind = "overlaps the previous tensor" if b < pos else "leaves a gap"
            raise err(f"tensor {name!r}: data_offsets start at {b}; {kind} ({where})")
        pos = e
        prev = name
    if pos != data_len:
        if pos < data_len:
            raise err(
                f"{data_len - pos} trailing bytes after the last tensor (data is {data_len} bytes, "
                f"tensors cover {pos})"
            )
        raise err(f"tensors cover {pos} data bytes but the file has only {data_len}")  # pragma: no cover


def parse_header(raw: bytes | bytearray, data_start: int, size: int, path: str, err: Err
                 ) -> tuple[dict[str, str], dict[str, TensorInfo]]:
    """(metadata, tensors in offset order) of a file of `size` bytes whose data starts at `data_start`."""
    header = decode_header(raw, err)
    meta = pop_metadata(header, err)
    data_len = size - data_start
    entries = []
    for order, (name, entry) in enumerate(header.items()):
        b, e, dt, shape = check_entry(name, entry, data_len, err)
        entries.append((b, e, order, name, dt, shape))
    entries.sort()
    check_layout(entries, data_len, err)
    return meta, {name: TensorInfo(name, dt, shape, data_start + b, data_start + e, path)
                  for b, e, _o, name, dt, shape in entries}
