"""The built-in judges, registered like any third-party plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from smfa_methods.hookspecs import hookimpl

if TYPE_CHECKING:
    from . import JudgeFactory


@hookimpl
def register_judges(register: Callable[[JudgeFactory], None]) -> None:
    """Register the built-in judges: heuristic, OpenAI-compatible API and local HF model."""
    from .heuristic import HeuristicJudge
    from .hf_judge import HFJudge
    from .openai_judge import OpenAIJudge

    register(HeuristicJudge)
    register(OpenAIJudge)
    register(HFJudge)
