"""Turn library errors into one-line CLI errors (exit 1, no traceback unless --debug)."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import click

from smfa_core.errors import SmfaError


def debug_enabled() -> bool:
    """--debug or SMFA_DEBUG=1: tracebacks are printed (to stderr) with the one-line error."""
    return os.environ.get("SMFA_DEBUG", "") not in ("", "0")


def fail(exc: BaseException, message: str | None = None) -> click.ClickException:
    """The one-line error for `exc` (the traceback first, with --debug)."""
    if debug_enabled():
        traceback.print_exception(exc, file=sys.stderr)
    return click.ClickException(str(exc) if message is None else message)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: a command's SmfaError or OS error becomes a one-line click error, not a traceback."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SmfaError as exc:
            raise fail(exc) from None
        except FileNotFoundError as exc:
            raise fail(exc, f"{exc.filename}: no such file or directory") from None
        except PermissionError as exc:
            raise fail(exc, f"{exc.filename}: permission denied") from None
        except OSError as exc:  # disk full, I/O errors: what failed, on which path
            where = f"{exc.filename}: " if exc.filename else ""
            raise fail(exc, f"{where}{exc.strerror or exc}") from None

    return wrapper


def run_cli(cli: click.Group) -> None:
    """The console script: signals give exit 130/143 with one line; an unexpected exception
    gives one line naming it (the traceback with --debug) and exit 1."""
    from . import signals

    signals.install(running=True)
    try:
        cli(standalone_mode=True)
    except signals.Interrupted as exc:
        click.echo(signals.message(exc.signum), err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if debug_enabled():
            traceback.print_exception(exc, file=sys.stderr)
        hint = "" if debug_enabled() else " (rerun with --debug for the traceback)"
        click.echo(f"Error: unexpected {type(exc).__name__}: {exc}{hint}", err=True)
        sys.exit(1)
