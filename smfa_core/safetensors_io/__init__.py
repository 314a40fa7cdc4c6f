"""Streaming safetensors I/O: strict header parsing, explicit reads into reused buffers, chunked writes.

``format`` (dtypes, TensorInfo, header validation), ``reader`` (SafetensorsReader: preadv into
caller buffers, no mmap), ``writer`` (SafetensorsWriter: header first, data in chunks) and
``checkpoint`` (a file or a sharded directory, and its index). The names below are the API.
"""

from __future__ import annotations

from .checkpoint import Checkpoint, write_index
from .format import DTYPES, MAX_HEADER_SIZE, TensorInfo, TensorNotFound, dtype_name, itemsize
from .reader import SafetensorsReader
from .writer import SafetensorsWriter

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
