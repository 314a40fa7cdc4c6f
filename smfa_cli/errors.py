"""Turn library errors into one-line CLI errors (exit 1, no traceback)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from smfa_core.errors import SmfaError


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SmfaError as exc:
            raise click.ClickException(str(exc)) from None
        except FileNotFoundError as exc:
            raise click.ClickException(f"{exc.filename}: no such file or directory") from None
        except PermissionError as exc:
            raise click.ClickException(f"{exc.filename}: permission denied") from None

    return wrapper
