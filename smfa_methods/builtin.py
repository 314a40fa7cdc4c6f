"""The default plugin: registers the built-in methods exactly as a third-party plugin would."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .hookspecs import hookimpl
from .methods.ga_diff import GADiff
from .methods.grad_ascent import GradAscent
from .methods.idk import IdkTuning
from .methods.idk_dpo import IdkDPO
from .methods.kl_min import KLMin
from .methods.manu import MANU
from .methods.npo import NPO, SimNPO
from .methods.rmu import RMU
from .methods.smfa import MFA, SMFA
from .methods.task_vector import TaskVector
from .methods.undial import UNDIAL

if TYPE_CHECKING:
    from .method import Method


@hookimpl
def register_methods(register: Callable[[Method], None]) -> None:
    """Register the built-in methods: the paper's method and baselines, then the field's current ones."""
    # The paper's method and baselines, then the field's current methods (issue 11).
    for method in (IdkTuning(), GADiff(), KLMin(), MANU(), SMFA(), MFA(),
                   GradAscent(), NPO(), SimNPO(), IdkDPO(), RMU(), UNDIAL(), TaskVector()):
        register(method)
