"""Loads the compiled extension; a missing or broken .so warns once instead of crashing."""

from __future__ import annotations

import warnings

from . import _ops  # noqa: F401  (schemas first; the .so registers implementations)

C = None
error = ""
try:
    from . import _C as C  # type: ignore[attr-defined,no-redef]
except ImportError as exc:  # pragma: no cover - depends on the build
    error = str(exc)
    warnings.warn(f"smfa: compiled kernels unavailable ({exc}); using the reference backend",
                  stacklevel=2)
