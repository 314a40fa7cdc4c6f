"""The default plugin: registers the built-in methods exactly as a third-party plugin would."""

from __future__ import annotations

from .hookspecs import hookimpl
from .methods.ga_diff import GADiff
from .methods.idk import IdkTuning
from .methods.kl_min import KLMin
from .methods.manu import MANU
from .methods.smfa import MFA, SMFA


@hookimpl
def register_methods(register):
    for method in (IdkTuning(), GADiff(), KLMin(), MANU(), SMFA(), MFA()):
        register(method)
