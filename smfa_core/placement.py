"""Where the kernels run, and how chunks get there and back.

On the CPU chunks are used where they were read: no copies. On a GPU every chunk goes
through pinned host staging buffers: copied there, sent host-to-device without blocking,
processed by kernels queued on the current stream, and its outputs sent back without
blocking into pinned buffers. Two slots alternate, and the engine writes chunk i only
after it has read (and queued) chunk i+1, so file reads overlap the GPU's work. GPU
memory is bounded by two slots of one chunk each, whatever the model size.

`staged=True` on the CPU runs the same slot logic with ordinary buffers, which is how the
pipeline's ordering is tested on machines without a GPU.
"""

from __future__ import annotations

import torch

from .errors import SmfaError


class Placement:
    def __init__(self, device: str = "cpu", *, staged: bool | None = None) -> None:
        try:
            self.device = torch.device(device)
        except RuntimeError:
            raise SmfaError(f"--device {device!r} is not a device torch knows (cpu, cuda, cuda:1, ...)") from None
        self.cuda = self.device.type == "cuda"
        if self.cuda and not torch.cuda.is_available():
            raise SmfaError(f"--device {device}: no CUDA device is available here")
        if self.device.type not in ("cpu", "cuda"):
            raise SmfaError(f"--device {device}: only cpu and cuda are supported")
        self.staged = self.cuda if staged is None else staged or self.cuda
        self.depth = 2 if self.staged else 1  # chunks in flight
        self._host: dict[tuple[int, str], torch.Tensor] = {}
        self._dev: dict[tuple[int, str], torch.Tensor] = {}
        self._events: dict[int, object] = {}

    def _buf(self, store: dict, key: tuple[int, str], nbytes: int, *, pinned: bool, on_device: bool) -> torch.Tensor:
        buf = store.get(key)
        if buf is None or buf.numel() < nbytes:
            if on_device:
                buf = torch.empty(nbytes, dtype=torch.uint8, device=self.device)
            else:
                buf = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned)
            store[key] = buf
        return buf

    def _typed(self, buf: torch.Tensor, dtype: torch.dtype, n: int) -> torch.Tensor:
        return buf[: n * dtype.itemsize].view(dtype)

    def put(self, slot: int, role: str, x: torch.Tensor | None) -> torch.Tensor | None:
        """A chunk read on the host, where the kernels can use it."""
        if x is None or not self.staged or (self.cuda and x.device == self.device):
            return x  # unstaged, or already there (a LoRA delta expanded on the GPU)
        n, dt = x.numel(), x.dtype
        host = self._typed(self._buf(self._host, (slot, role), n * dt.itemsize, pinned=self.cuda, on_device=False), dt, n)
        host.copy_(x)
        if not self.cuda:
            return host
        dev = self._typed(self._buf(self._dev, (slot, role), n * dt.itemsize, pinned=False, on_device=True), dt, n)
        dev.copy_(host, non_blocking=True)
        return dev

    def out(self, slot: int, role: str, dtype: torch.dtype, n: int) -> torch.Tensor:
        """An output buffer for the kernels of this slot."""
        if not self.staged:
            raise RuntimeError("unstaged placements use the engine's own buffers")
        store = self._dev if self.cuda else self._host
        return self._typed(self._buf(store, (slot, "out:" + role), n * dtype.itemsize, pinned=False,
                                     on_device=self.cuda), dtype, n)

    def fetch(self, slot: int, role: str, t: torch.Tensor) -> torch.Tensor:
        """The host copy of a kernel output (complete after sync(slot))."""
        if not self.cuda:
            return t
        n, dt = t.numel(), t.dtype
        host = self._typed(self._buf(self._host, (slot, "back:" + role), n * dt.itemsize, pinned=True,
                                     on_device=False), dt, n)
        host.copy_(t, non_blocking=True)
        return host

    def staging_bytes(self) -> dict[str, int]:
        """Bytes held by the staging buffers so far: "device" (GPU memory on a GPU) and "host"
        (pinned on a GPU). Bounded by slots x roles x one chunk, whatever the model size."""
        return {"device": sum(b.numel() for b in self._dev.values()),
                "host": sum(b.numel() for b in self._host.values())}

    def record(self, slot: int) -> None:
        """Mark the end of this slot's queued work."""
        if self.cuda:
            ev = torch.cuda.Event()
            ev.record()
            self._events[slot] = ev

    def sync(self, slot: int) -> None:
        """Wait for this slot's queued work (its staging buffers are then free again)."""
        ev = self._events.pop(slot, None)
        if ev is not None:
            ev.synchronize()
