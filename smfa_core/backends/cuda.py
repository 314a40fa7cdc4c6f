"""The `cuda` backend: the CUDA kernels of smfa_core._C (csrc/cuda/sculpt_cuda.cu, registered
by csrc/cuda_ops.cpp as the CUDA implementations of the torch.ops.smfa ops).

They exist only when the extension was built against a CUDA torch with nvcc on PATH.
Neither importing this module nor available() initialises CUDA.
"""

from __future__ import annotations

import torch

from .. import _ext
from .compiled import sculpt_chunk, sumsq_blocks, sweep_counts  # noqa: F401  (the backend's ops)

NAME = "cuda"
DEVICES = ("cuda",)


def built_with_cuda() -> bool:
    """True when smfa_core._C registered CUDA kernels for the smfa ops."""
    if _ext.C is None:
        return False
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return all(has(f"smfa::{op}", "CUDA") for op in ("sumsq_blocks", "sculpt_chunk", "sweep_counts"))


def available() -> tuple[bool, str]:
    """Whether the CUDA kernels can run: _C built with CUDA and a device present; (ok, reason)."""
    if _ext.C is None:
        return False, f"smfa_core._C not built ({_ext.error})"
    if not built_with_cuda():
        return False, ("smfa_core._C was built without CUDA kernels (torch without CUDA or no nvcc at "
                       "build time; rebuild with `pip install --no-build-isolation -e .`)")
    if not torch.cuda.is_available():  # does not initialise CUDA
        return False, "no CUDA device (torch.cuda.is_available() is False)"
    return True, f"CUDA kernels, torch CUDA {torch.version.cuda}"
