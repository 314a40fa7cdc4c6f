"""Kernel backends and the choice between them.

A backend is a module with NAME, DEVICES, available() -> (ok, reason) and the three ops
of smfa_core._ops (sumsq_blocks, sculpt_chunk, sweep_counts). Importing a backend module
must never initialise CUDA; availability is probed lazily.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from ..errors import BackendUnavailable

# Preference order for `auto`, per device type.
AUTO_ORDER = {"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")}
NAMES = ("reference", "cpu", "cuda", "triton")

_cache: dict[str, ModuleType | None] = {}
_reasons: dict[str, str] = {}


def _load(name: str) -> ModuleType | None:
    if name not in _cache:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
            ok, reason = mod.available()
        except Exception as exc:  # a broken optional backend must not break the package
            mod, ok, reason = None, False, f"failed to load: {exc}"
        _cache[name] = mod if ok else None
        _reasons[name] = reason
    return _cache[name]


def available_backends() -> dict[str, str]:
    """Every backend name -> 'ok: detail' or the reason it is unavailable."""
    out = {}
    for name in NAMES:
        mod = _load(name)
        out[name] = ("ok: " if mod is not None else "unavailable: ") + _reasons[name]
    return out


def get_backend(name: str = "auto", device: str = "cpu", *, quiet: bool = False) -> ModuleType:
    """Resolve a backend for tensors on `device` ('cpu', 'cuda', 'cuda:1', ...)."""
    dev_type = device.split(":")[0] if isinstance(device, str) else device.type
    if name == "auto":
        for cand in AUTO_ORDER.get(dev_type, ("reference",)):
            mod = _load(cand)
            if mod is not None and dev_type in mod.DEVICES:
                if cand == "reference" and not quiet:
                    skipped = {c: _reasons.get(c) for c in AUTO_ORDER[dev_type] if c != "reference"}
                    warnings.warn(f"smfa: using the slow reference backend on {dev_type} ({skipped})",
                                  stacklevel=2)
                return mod
        raise BackendUnavailable(f"no backend for device {dev_type!r}")
    if name not in NAMES:
        raise BackendUnavailable(f"unknown backend {name!r}; choose from auto, {', '.join(NAMES)}")
    mod = _load(name)
    if mod is None:
        raise BackendUnavailable(f"backend {name!r} is not available: {_reasons[name]}")
    if dev_type not in mod.DEVICES:
        raise BackendUnavailable(f"backend {name!r} does not run on {dev_type!r} tensors "
                                 f"(it supports {', '.join(mod.DEVICES)})")
    return mod
