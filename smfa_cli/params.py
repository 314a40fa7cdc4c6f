"""Bounded click parameter types: every numeric option is checked by click, before any work.

click's FloatRange lets NaN through (every comparison with NaN is false) and has no notion
of "finite": `FiniteFloat` rejects NaN and +-inf and then applies the range. `KSweep` parses
`--k-sweep` (START:STOP:STEP or a list) into a bounded list of k.
"""

from __future__ import annotations

import math
from typing import Any

import click

from smfa_core.engine import MAX_CHUNK_MB
from smfa_core.tensor_api import MAX_K


class FiniteFloat(click.FloatRange):
    """A finite float in [min, max] (open at min with min_open)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        v = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(v, param, ctx)


class KSweep(click.ParamType):
    """--k-sweep: START:STOP:STEP (inclusive) or k1,k2,...; finite k >= 0, a bounded count."""

    name = "sweep"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, list):
            return value
        from smfa_core.errors import SmfaError
        from smfa_core.sweep import parse_sweep

        try:
            return parse_sweep(value)
        except SmfaError as exc:
            self.fail(str(exc), param, ctx)


CHUNK_MB = FiniteFloat(min=0, min_open=True, max=MAX_CHUNK_MB)
K = FiniteFloat(min=0, max=MAX_K)
EPS = FiniteFloat(min=0, max=1)
