"""Every built-in method states its loss, reference model and paper; `smfa methods --verbose`
prints them and docs/methods.md is exactly what the registry generates."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from smfa_methods.catalog import method_rows, methods_markdown
from smfa_methods.registry import get_methods

DOC = Path(__file__).resolve().parents[2] / "docs" / "methods.md"
FIELD = ["grad_ascent", "npo", "simnpo", "idk_dpo", "rmu", "undial", "task_vector"]


def test_docs_methods_md_is_generated_from_the_registry():
    assert DOC.read_text() == methods_markdown(), "regenerate: python -m smfa_methods.catalog > docs/methods.md"


def test_every_builtin_states_loss_and_paper():
    methods = get_methods()
    for r in method_rows():
        assert r["equation"] and r["paper"] and r["reference"], r["name"]
    for name in FIELD:  # the docstring carries the equation's source too
        m = methods[name].method
        assert methods[name].plugin == "smfa_methods.builtin"
        assert m.paper.split(" ")[0] in type(m).__doc__, name


def test_methods_verbose():
    from smfa_cli.main import cli

    r = CliRunner().invoke(cli, ["methods", "--verbose"])
    assert r.exit_code == 0, r.output
    for name in FIELD:
        assert f"{name}  [smfa_methods.builtin]" in r.output
    assert "loss:      L = -(2/β)·mean_f log σ(-β·(log π_θ(y|x) - log π_ref(y|x)))" in r.output
    assert "adapter disabled under --lora" in r.output
    # each option with its type, range, default and help line (typed options)
    assert "  options:\n    beta: float in [1e-06, 1000], default 0.1: inverse temperature" in r.output
