"""Judges give each answer a Fact Score and a Meaningful Score (0-10).

A judge is any object with a `name` and `score(requests) -> results` (one result per
request, in order; a failed judgement is a result with `error` set, never a missing row).
Judges are registered through the `register_judges(register)` plugin hook; `register`
takes a factory (usually the class) with a `name` attribute, called with the user's options.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class JudgeRequest:
    question: str
    reference: str
    prediction: str
    keys: tuple[str, ...] = ()


@dataclass
class JudgeResult:
    fact: float | None = None
    meaningful: float | None = None
    error: str | None = None


@runtime_checkable
class Judge(Protocol):
    name: str

    def score(self, requests: Sequence[JudgeRequest]) -> list[JudgeResult]: ...


JudgeFactory = Callable[..., Judge]


class JudgeError(ValueError):
    """A judge that cannot be found, registered or configured."""


def validate_judge(factory: object) -> JudgeFactory:
    """Check that a judge factory is callable and has a non-empty `name` (JudgeError otherwise); returns it."""
    name = getattr(factory, "name", None)
    if not isinstance(name, str) or not name:
        raise JudgeError(f"judge {factory!r} has no `name`")
    if not callable(factory):
        raise JudgeError(f"judge {name!r} is not callable")
    return factory  # type: ignore[return-value]


def get_judge_plugins() -> dict[str, tuple[JudgeFactory, str]]:
    """name -> (factory, plugin that registered it). A plugin whose registration fails is
    recorded as broken (smfa_methods.plugins.broken_plugins) and the others still count."""
    from smfa_methods.plugins import register_builtin
    from smfa_methods.registry import collect

    register_builtin("smfa_eval.judges.builtin")
    return collect("register_judges", validate_judge)  # type: ignore[return-value]


def get_judges() -> dict[str, JudgeFactory]:
    """All registered judge factories by name (built-ins plus installed plugins)."""
    return {n: f for n, (f, _plugin) in get_judge_plugins().items()}


def get_judge(name: str, **options: Any) -> Judge:
    """Start judge `name` with `options`; JudgeError for an unknown name, bad options or a failed start."""
    from smfa_methods.plugins import broken_note

    judges = get_judges()
    if name not in judges:
        raise JudgeError(f"unknown judge {name!r}; available: {', '.join(sorted(judges))}{broken_note()}")
    try:
        return judges[name](**options)
    except TypeError as exc:
        raise JudgeError(f"judge {name!r}: bad options {sorted(options)}: {exc}") from None
    except JudgeError:
        raise
    except Exception as exc:  # a plugin's judge that cannot start: its error, not a traceback
        raise JudgeError(f"judge {name!r} failed to start: {type(exc).__name__}: {exc}") from exc
