"""Reading safetensors files: a validated header, then byte ranges read with ``os.preadv``
straight into the memory of a caller-provided CPU tensor, so peak memory is whatever buffer
the caller chose. Nothing here memory-maps a file."""

from __future__ import annotations

import ctypes
import os
import stat
import struct

import torch

from ..errors import SmfaError
from .format import _MAX_IO, _N_LEN, MAX_HEADER_SIZE, TensorInfo, TensorNotFound, parse_header


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
        meta, self.tensors = parse_header(raw, self.data_start, size, self.path, self._err)
        if meta:
            self.metadata = meta

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
