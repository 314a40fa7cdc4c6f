"""The sculpt rule's options, in one place: their defaults and their validation.

`SculptOptions` is what `sculpt`/`merge`, `inspect` and `sculpt_model_` share (the CLI takes
its defaults from `DEFAULTS`). Building one validates it, so every entry point refuses the
same values with the same message. Options of one entry point only (emit, base, device, the
sweep's ks) stay in that entry point's signature.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ._ops import MODES
from .plan import chunk_elems
from .tensor_api import check_mode, check_options


@dataclass(frozen=True)
class SculptOptions:
    """mode (both/conflict/magnitude/none), ε of ρ, ρ per tensor or global, the kernel backend,
    the chunk size and what to do with a forget tensor the anchor lacks."""

    mode: str = "both"
    eps: float = 1e-8
    rho_scope: str = "tensor"
    backend: str = "auto"
    chunk_mb: float = 64
    missing_anchor: str = "error"

    def __post_init__(self) -> None:
        check_mode(self.mode)
        check_options(eps=self.eps, rho_scope=self.rho_scope, missing_anchor=self.missing_anchor)
        chunk_elems(self.chunk_mb)

    @property
    def imode(self) -> int:
        """The mode as the kernels' integer code."""
        return MODES[self.mode]

    @property
    def step(self) -> int:
        """Elements per chunk (plan.chunk_elems)."""
        return chunk_elems(self.chunk_mb)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULTS = SculptOptions()
