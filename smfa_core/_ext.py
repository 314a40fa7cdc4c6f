"""Loads the compiled extension; a missing or broken .so warns once instead of crashing."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from . import _ops  # noqa: F401  (schemas first; the .so registers implementations)

# The op results this Python code expects from the compiled kernels (csrc/module.cpp says
# its own): 2 = sculpt_chunk returns [conflict, masked, non-finite]. A build from older sources
# would return two counts, and the engine would no longer see a non-finite output.
OPS_VERSION = 2

C: ModuleType | None = None
error = ""
try:
    C = importlib.import_module(f"{__package__}._C")
except ImportError as exc:  # depends on the build
    error = str(exc)
    warnings.warn(f"smfa: compiled kernels unavailable ({exc}); using the reference backend",
                  stacklevel=2)
if C is not None and getattr(C, "OPS_VERSION", 1) != OPS_VERSION:
    error = (f"stale build: smfa_core._C has ops version {getattr(C, 'OPS_VERSION', 1)}, this code needs "
             f"{OPS_VERSION}; rebuild it (make install, or python setup.py build_ext --inplace)")
    C = None
    warnings.warn(f"smfa: compiled kernels unavailable ({error}); using the reference backend", stacklevel=2)
