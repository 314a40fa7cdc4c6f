"""Loads the compiled extension; a missing or broken .so warns once instead of crashing."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from . import _ops  # noqa: F401  (schemas first; the .so registers implementations)

C: ModuleType | None = None
error = ""
try:
    C = importlib.import_module(f"{__package__}._C")
except ImportError as exc:  # depends on the build
    error = str(exc)
    warnings.warn(f"smfa: compiled kernels unavailable ({exc}); using the reference backend",
                  stacklevel=2)
