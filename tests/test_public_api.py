"""Every public module-level function of the four packages is typed and documented (issue 13):
a docstring, and annotations on every parameter and on the return value. Standard library only
(an AST walk, nothing imported), so it is fast."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("smfa_core", "smfa_methods", "smfa_eval", "smfa_cli")


def _public_functions() -> list[tuple[str, ast.FunctionDef]]:
    found = []
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
            where = f.relative_to(ROOT).as_posix()
            found += [(where, n) for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    return found


def _untyped(n: ast.FunctionDef) -> bool:
    args = [a for a in n.args.posonlyargs + n.args.args + n.args.kwonlyargs if a.arg not in ("self", "cls")]
    args += [a for a in (n.args.vararg, n.args.kwarg) if a is not None]
    return n.returns is None or any(a.annotation is None for a in args)


def test_public_functions_are_documented_and_typed() -> None:
    found = _public_functions()
    assert len(found) > 200, f"the walk found only {len(found)} public functions: is ROOT ({ROOT}) right?"
    nodoc = [f"{where}:{n.lineno} {n.name}" for where, n in found if not ast.get_docstring(n)]
    notype = [f"{where}:{n.lineno} {n.name}" for where, n in found if _untyped(n)]
    assert not nodoc, "public functions without a docstring:\n" + "\n".join(nodoc)
    assert not notype, "public functions with an unannotated parameter or return:\n" + "\n".join(notype)
