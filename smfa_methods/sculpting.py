"""Sculpt-and-merge for the `smfa` method: the streaming engine, the same code path as
`smfa sculpt`, so the method's final model is exactly what the CLI would produce."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .errors import MethodError


def sculpt_and_merge(
    forget: Path, anchor: Path, *, k: float, base: Path, out: Path, mode: str = "both", eps: float = 1e-8,
    k_rules: Sequence[str] = (),
) -> dict:
    """W_o + sculpt(ΔW_f, ΔW_a) for every tensor of ΔW_f, written as an HF checkpoint at `out`.
    `k_rules`: per-tensor k ('REGEX=K', first fullmatch wins), `k` for the rest."""
    import smfa_core

    report = smfa_core.sculpt(str(forget), str(anchor), k=k, base=str(base), out=str(out), emit="merged",
                              mode=mode, eps=eps, overwrite=True, k_rules=list(k_rules) or None)
    return report.as_dict()


def k_rules_option(value: object) -> list[str]:
    """The smfa method's `k_rules` option: a list of 'REGEX=K' strings, or the path of a rules
    file (one REGEX=K a line, as `smfa sculpt --k-rules`). Parsed here so a bad rule fails
    before any training."""
    from smfa_core.errors import SmfaError
    from smfa_core.krules import load_rules, parse_rule

    try:
        if isinstance(value, str):
            rules = load_rules(value) if value else []
        elif isinstance(value, list) and all(isinstance(r, str) for r in value):
            rules = [parse_rule(r) for r in value]
        else:
            raise MethodError(f"smfa: k_rules must be a list of 'REGEX=K' strings or a rules file path, got {value!r}")
    except SmfaError as exc:
        raise MethodError(f"smfa: k_rules: {exc}") from None
    return [f"{r.pattern}={r.k!r}" for r in rules]
