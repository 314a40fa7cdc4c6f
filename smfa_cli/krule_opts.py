"""The per-tensor k flags of `smfa sculpt` and `smfa inspect` (smfa_core.krules)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def k_rule_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--k-rule REGEX=K (repeatable) and --k-rules FILE."""
    fn = click.option("--k-rules", "k_rules_file", type=click.Path(), default=None,
                      help="File of REGEX=K lines (# comments), tried after the --k-rule flags.")(fn)
    return click.option("--k-rule", "k_rule", multiple=True, metavar="REGEX=K",
                        help="k for tensors whose on-disk name fully matches REGEX (repeatable; the first "
                             "matching rule wins; --k covers the rest, and without --k an unmatched tensor "
                             "is an error).")(fn)


def collect_rules(k_rule: tuple[str, ...], k_rules_file: str | None) -> list:
    """The flags' rules in priority order: each --k-rule as given, then the file's lines."""
    from smfa_core.krules import load_rules, parse_rule

    rules = [parse_rule(r) for r in k_rule]
    if k_rules_file is not None:
        rules += load_rules(k_rules_file)
    return rules
