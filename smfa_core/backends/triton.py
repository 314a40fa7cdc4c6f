"""The `triton` backend: Triton kernels (triton_kernels.py) as the custom ops
torch.ops.smfa_triton.* (schemas of smfa_core/_ops.py), on CUDA tensors.

With TRITON_INTERPRET=1 in the environment (set before this backend's kernels are first
used) the kernels run on CPU tensors through Triton's interpreter: that is how the tests
check them on machines without a GPU. Neither importing this module nor available()
imports triton's kernels or initialises CUDA; the kernels are compiled on first use.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

NAME = "triton"


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


DEVICES: tuple[str, ...] = ("cuda", "cpu") if _interpret() else ("cuda",)

_kernels = None


def available() -> tuple[bool, str]:
    """Whether Triton can run here (installed; a GPU or TRITON_INTERPRET=1), without importing it."""
    if importlib.util.find_spec("triton") is None:
        return False, "triton not installed (pip install 'smfa[triton]')"
    if _interpret():
        return True, "Triton interpreter (TRITON_INTERPRET=1), CPU tensors"
    import torch

    if not torch.cuda.is_available():  # does not initialise CUDA
        return False, "no GPU and TRITON_INTERPRET unset"
    return True, "Triton on CUDA"


def _ops():
    """torch.ops.smfa_triton: the op set of smfa_core/_ops.py in a namespace of its own (the
    `smfa` ops' CUDA key belongs to the C++ kernels), with the Triton kernels registered for
    CUDA tensors, and for CPU tensors under the interpreter. Done on first use: importing
    this module imports no triton."""
    global _kernels
    if _kernels is None:
        import torch

        from .. import _ops
        from . import triton_kernels as k

        if _interpret():
            k.Config.interpret = True
            k.Config.sculpt_block = 65536
        lib = _ops.define_ops("smfa_triton")
        for name in _ops.SCHEMAS:
            for key in ("CUDA", "CPU") if _interpret() else ("CUDA",):
                lib.impl(name, getattr(k, name), key)
        _kernels = (lib, torch.ops.smfa_triton)
    return _kernels[1]


def sumsq_blocks(x: torch.Tensor, x_base: torch.Tensor | None = None) -> torch.Tensor:
    """Per-block sums of squares of x - x_base through torch.ops.smfa_triton (the Triton kernels)."""
    return _ops().sumsq_blocks(x, x_base)


def sculpt_chunk(f: torch.Tensor, f_base: torch.Tensor | None, a: torch.Tensor, a_base: torch.Tensor | None, t: float,
                 mode: int, w: torch.Tensor | None, out: torch.Tensor,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sculpt one chunk into `out` through torch.ops.smfa_triton (the Triton kernels); returns the counts."""
    return _ops().sculpt_chunk(f, f_base, a, a_base, t, mode, w, out, mask)


def sweep_counts(f: torch.Tensor, f_base: torch.Tensor | None, a: torch.Tensor, a_base: torch.Tensor | None,
                 ts: torch.Tensor) -> torch.Tensor:
    """Conflict and per-threshold masked counts through torch.ops.smfa_triton (the Triton kernels)."""
    return _ops().sweep_counts(f, f_base, a, a_base, ts)
