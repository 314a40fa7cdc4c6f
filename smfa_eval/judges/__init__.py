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


def get_judges() -> dict[str, JudgeFactory]:
    """All registered judge factories by name (built-ins plus installed plugins)."""
    from smfa_methods.plugins import register_builtin

    pm = register_builtin("smfa_eval.judges.builtin")
    found: dict[str, JudgeFactory] = {}

    def register(factory: JudgeFactory) -> None:
        name = getattr(factory, "name", None)
        if not isinstance(name, str) or not name:
            raise JudgeError(f"judge {factory!r} has no `name`")
        if not callable(factory):
            raise JudgeError(f"judge {name!r} is not callable")
        if name in found:
            raise JudgeError(f"judge {name!r} is registered twice")
        found[name] = factory

    pm.hook.register_judges(register=register)
    return found


def get_judge(name: str, **options: Any) -> Judge:
    judges = get_judges()
    if name not in judges:
        raise JudgeError(f"unknown judge {name!r}; available: {', '.join(sorted(judges))}")
    try:
        return judges[name](**options)
    except TypeError as exc:
        raise JudgeError(f"judge {name!r}: bad options {sorted(options)}: {exc}") from None
