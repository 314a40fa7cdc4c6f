"""Per-tensor k: rules mapping tensor-name patterns to k (`--k-rule REGEX=K`, `--k-rules FILE`).

A rule's regex is matched with re.fullmatch against the tensor's on-disk name (the names the
report lists); the first matching rule wins; `default` (the `--k` value) covers tensors no
rule matches, and without a default such a tensor is an error that names it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import SmfaError
from .tensor_api import check_k


@dataclass(frozen=True)
class KRule:
    pattern: str
    k: float

    @property
    def regex(self) -> re.Pattern:
        return _compile(self.pattern)


def _compile(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise SmfaError(f"--k-rule {pattern!r}: not a valid regex ({exc})") from None


def parse_rule(text: str, where: str = "--k-rule") -> KRule:
    """'REGEX=K'; split at the last '=' (a regex may contain one, a number never does)."""
    pattern, sep, raw = text.rpartition("=")
    if not sep or not pattern:
        raise SmfaError(f"{where} {text!r}: expected REGEX=K, e.g. 'visual\\..*=5'")
    try:
        k = float(raw)
    except ValueError:
        raise SmfaError(f"{where} {text!r}: k {raw!r} is not a number") from None
    check_k(k)
    _compile(pattern)
    return KRule(pattern, k)


def load_rules(path: str | Path) -> list[KRule]:
    """A rules file: one REGEX=K per line, in priority order; blank lines and lines starting
    with '#' are ignored."""
    path = Path(path)
    if not path.is_file():
        raise SmfaError(f"--k-rules {path}: no such file")
    rules = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append(parse_rule(line, where=f"{path}:{lineno}:"))
    return rules


def as_rules(rules: Iterable[KRule | str | tuple[str, float]] | None) -> list[KRule]:
    """Rules from KRule objects, 'REGEX=K' strings or (regex, k) pairs."""
    out = []
    for r in rules or ():
        if isinstance(r, KRule):
            out.append(r)
        elif isinstance(r, str):
            out.append(parse_rule(r))
        else:
            out.append(parse_rule(f"{r[0]}={r[1]}"))
    return out


def k_for(name: str, rules: Sequence[KRule], default: float | None) -> float:
    """The k of tensor `name`: the first rule whose regex fully matches it, else `default` (SmfaError if None)."""
    for r in rules:
        if r.regex.fullmatch(name):
            return r.k
    if default is None:
        pats = ", ".join(repr(r.pattern) for r in rules)
        raise SmfaError(f"tensor {name!r} matches no --k-rule ({pats}) and no --k default is given")
    return default


def resolve_ks(names: Iterable[str], rules: Sequence[KRule], default: float | None) -> dict[str, float]:
    """k of every tensor, checked before any output is written."""
    if default is not None:
        check_k(default)
    return {n: k_for(n, rules, default) for n in names}


def describe(rules: Sequence[KRule]) -> list[list]:
    """The rules as the report records them: [[regex, k], ...]."""
    return [[r.pattern, r.k] for r in rules]
