"""What every registered method says about itself (loss, reference model, options, paper),
for `smfa methods --verbose` and docs/methods.md (written from here: `python -m
smfa_methods.catalog > docs/methods.md`; a test keeps the two equal)."""

from __future__ import annotations

import json

from .method import Method
from .options import defaults, option_specs
from .registry import get_methods

LORA_REFERENCE = "original model: adapter disabled under --lora, frozen copy under --full/--all-params"


def reference_of(method: Method) -> str:
    """What the loss compares against: the method's own note, else what needs_reference implies."""
    if getattr(method, "reference", ""):
        return method.reference
    return LORA_REFERENCE if method.needs_reference else "none"


def method_rows() -> list[dict]:
    """One row per registered method (every loaded plugin), sorted by name."""
    return [
        {"name": name, "plugin": r.plugin, "description": r.method.description,
         "equation": getattr(r.method, "equation", ""), "paper": getattr(r.method, "paper", ""),
         "reference": reference_of(r.method),
         "options": defaults(r.method.options),
         "option_help": {k: o.describe() for k, o in option_specs(r.method.options).items()}}
        for name, r in get_methods().items()
    ]


def _options(opts: dict) -> str:
    return ", ".join(f"`{k}={json.dumps(v)}`" for k, v in opts.items()) or "(none)"


def methods_markdown() -> str:
    """docs/methods.md: one table of the built-in methods."""
    head = ("# Unlearning methods\n\n"
            "Generated from the method registry (`python -m smfa_methods.catalog > docs/methods.md`; "
            "`smfa methods --verbose` prints the same). Options are set with `--set KEY=VALUE` "
            "(`smfa unlearn`) or `--set METHOD.KEY=VALUE` (`smfa bench run`); every training method runs "
            "with `--lora` (default), `--full` or `--all-params`.\n\n"
            "| method | loss | reference model needed | options | paper |\n|---|---|---|---|---|\n")
    rows = [r for r in method_rows() if r["plugin"] == "smfa_methods.builtin"]
    cell = lambda s: s.replace("|", "\\|")  # noqa: E731  a table cell cannot hold a bare |
    body = "".join(f"| `{r['name']}` | {cell(r['equation'])} | {cell(r['reference'])} | "
                   f"{cell(_options(r['options']))} | {cell(r['paper'])} |\n" for r in rows)
    return head + body


def verbose_text(rows: list[dict]) -> str:
    """`smfa methods --verbose`: every field of every method."""
    out = []
    for r in rows:
        out += [f"{r['name']}  [{r['plugin']}]", f"  {r['description']}",
                f"  loss:      {r['equation'] or '-'}", f"  reference: {r['reference']}",
                f"  paper:     {r['paper'] or '-'}", "  options:"]
        out += [f"    {k}: {text}" for k, text in r["option_help"].items()] or ["    (none)"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(methods_markdown(), end="")
