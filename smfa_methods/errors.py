"""Errors a user can fix (bad data, unknown method, bad option): the CLI prints them
without a traceback."""

from __future__ import annotations


class MethodError(Exception):
    """A user mistake in how a method is called (unknown name, bad option, bad model path)."""


class DataError(MethodError):
    """A forget/retain/train file that does not follow the JSONL schema."""
