"""The built-in judges, registered like any third-party plugin."""

from __future__ import annotations

from smfa_methods.hookspecs import hookimpl


@hookimpl
def register_judges(register) -> None:
    from .heuristic import HeuristicJudge
    from .hf_judge import HFJudge
    from .openai_judge import OpenAIJudge

    register(HeuristicJudge)
    register(OpenAIJudge)
    register(HFJudge)
