"""The smfa plugin hooks (pluggy project "smfa"). Third-party plugins implement these and
are found through the `smfa` entry-point group."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .method import Method

hookspec = pluggy.HookspecMarker("smfa")
hookimpl = pluggy.HookimplMarker("smfa")


@hookspec
def register_methods(register: Callable[[Method], None]) -> None:
    """Register unlearning methods: call register(method) for each `smfa_methods.Method`."""


@hookspec
def register_judges(register: Callable[[Callable[..., Any]], None]) -> None:
    """Register judges: call register(judge) for each `smfa_eval` judge."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the `smfa` CLI group."""
