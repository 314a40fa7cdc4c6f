"""smfa_core: sculpt and merge deltas out of core (safetensors + torch only).

`import smfa_core` never initialises CUDA and never imports transformers or peft.
"""

from __future__ import annotations

from ._ops import BLOCK, MODES
from .backends import available_backends, get_backend
from .errors import BackendUnavailable, SmfaError
from .tensor_api import TensorStats, sculpt_tensor

__all__ = [
    "BLOCK",
    "MODES",
    "BackendUnavailable",
    "SmfaError",
    "TensorStats",
    "available_backends",
    "get_backend",
    "sculpt_tensor",
    "sculpt",
    "merge",
    "inspect",
    "sculpt_model_",
]


def __getattr__(name: str):
    # The streaming engine is imported on first use so that `import smfa_core` stays light.
    if name in ("sculpt", "merge"):
        from . import engine

        return getattr(engine, name)
    if name == "inspect":
        from .sweep import inspect

        return inspect
    if name == "sculpt_model_":
        from .inmemory import sculpt_model_

        return sculpt_model_
    raise AttributeError(name)
