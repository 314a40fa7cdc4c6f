"""The smfa plugin hooks (pluggy project "smfa"). Third-party plugins implement these and
are found through the `smfa` entry-point group."""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("smfa")
hookimpl = pluggy.HookimplMarker("smfa")


@hookspec
def register_methods(register):
    """Register unlearning methods: call register(method) for each `smfa_methods.Method`."""


@hookspec
def register_judges(register):
    """Register judges: call register(judge) for each `smfa_eval` judge."""


@hookspec
def register_commands(cli):
    """Add click commands to the `smfa` CLI group."""
