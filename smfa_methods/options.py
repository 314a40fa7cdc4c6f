"""Method options: typed by their declared default, range-checked, with a help line.

A method's `options` maps each name to a plain default (``{"beta": 0.1}``) or to an
:class:`Option` (``{"beta": Option(0.1, "inverse temperature", min=0)}``). Either way a value
given with ``--set`` (a string) or through the API is converted to the default's type
(bool, int, float, str; JSON for lists, dicts and ``None`` defaults), and a number must be
finite unless the option says ``finite=False``: ``--set beta=NaN`` is an error, never a
NaN loss.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .errors import MethodError

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass(frozen=True)
class Option:
    """One method option: its default (which fixes its type), a help line for `smfa methods
    --verbose`, an inclusive range for numbers, the allowed values, and whether a non-finite
    number is allowed."""

    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    finite: bool = True

    def range(self) -> str:
        lo = "-inf" if self.min is None else f"{self.min:g}"
        hi = "inf" if self.max is None else f"{self.max:g}"
        return f"[{lo}, {hi}]"

    def describe(self) -> str:
        """`float in [0, 1], default 0.5: what it does`."""
        kind = type(self.default).__name__ if self.default is not None else "any"
        rng = ""
        if self.choices is not None:
            rng = " (" + " | ".join(map(str, self.choices)) + ")"
        elif self.min is not None or self.max is not None:
            rng = f" in {self.range()}"
        return f"{kind}{rng}, default {self.default!r}" + (f": {self.help}" if self.help else "")


def option_specs(options: dict[str, Any]) -> dict[str, Option]:
    """Every option as an Option (plain defaults get no help line and no range)."""
    return {k: v if isinstance(v, Option) else Option(v) for k, v in options.items()}


def defaults(options: dict[str, Any]) -> dict[str, Any]:
    """name -> default value."""
    return {k: s.default for k, s in option_specs(options).items()}


def _convert(spec: Option, v: Any) -> Any:
    """`v` as the default's type; ValueError says what was expected."""
    d = spec.default
    if isinstance(d, bool):
        if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
            return v.strip().lower() in _TRUE
        if not isinstance(v, bool):
            raise ValueError("must be true/false")
        return v
    if isinstance(d, (int, float)):
        if isinstance(v, str):
            try:
                v = float(v) if isinstance(d, float) or any(c in v.lower() for c in ".en") else int(v)
            except ValueError:
                raise ValueError("must be a number") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError("must be a number")
        if spec.finite and not math.isfinite(v):
            raise ValueError("must be a finite number")
        if isinstance(d, float):
            return float(v)
        if isinstance(v, float) and not v.is_integer():
            raise ValueError("must be an integer")
        return int(v) if math.isfinite(v) else v
    if isinstance(d, str):
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ValueError("must be a string")
        return str(v)
    if isinstance(v, str) and (d is None or isinstance(d, (list, dict, tuple))):
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def resolve(method: str, options: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults overridden by `given`, each converted and checked; MethodError names the
    method and the option."""
    specs = option_specs(options)
    unknown = set(given) - set(specs)
    if unknown:
        valid = ", ".join(sorted(specs)) or "(none)"
        raise MethodError(f"method {method!r} has no option {', '.join(sorted(unknown))}; valid: {valid}")
    out = {k: s.default for k, s in specs.items()}
    for k, v in given.items():
        spec = specs[k]
        try:
            value = _convert(spec, v)
        except ValueError as exc:
            raise MethodError(f"option {k!r} of {method!r} {exc}, got {v!r}") from None
        if spec.choices is not None and value not in spec.choices:
            raise MethodError(f"option {k!r} of {method!r} must be one of "
                              f"{', '.join(map(str, spec.choices))}, got {v!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not (
                (spec.min is None or value >= spec.min) and (spec.max is None or value <= spec.max)):
            raise MethodError(f"option {k!r} of {method!r} must be in {spec.range()}, got {v!r}")
        out[k] = value
    return out
