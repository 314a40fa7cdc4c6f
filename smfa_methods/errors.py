"""Errors a user can fix (bad data, unknown method, bad option): the CLI prints them
without a traceback."""

from __future__ import annotations


class MethodError(Exception):
    """A user mistake in how a method is called (unknown name, bad option, bad model path)."""


class DataError(MethodError):
    """A forget/retain/train file that does not follow the JSONL schema."""


class MethodFailed(MethodError):
    """A method's own code raised (its loss, its run): the message names the method and the
    step; the original exception is the cause (shown with --debug / SMFA_DEBUG=1)."""


class TrainingDiverged(MethodError):
    """The loss or the gradient norm became NaN or Inf: training stopped before the
    optimizer step that would have spread it into the weights."""
