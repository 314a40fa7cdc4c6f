"""Plugin registration: validation, listing, unknown names, options, and the CLI surface."""

from __future__ import annotations

import json

import pluggy
import pytest
from click.testing import CliRunner

from smfa_methods.errors import MethodError
from smfa_methods.hookspecs import hookimpl
from smfa_methods.method import Method
from smfa_methods.plugins import broken_plugins, get_plugin_manager
from smfa_methods.registry import get_method, get_methods, validate_method

BUILTIN = {"idk", "ga_diff", "kl_min", "manu", "smfa", "mfa",
           "grad_ascent", "npo", "simnpo", "idk_dpo", "rmu", "undial", "task_vector"}


def test_builtins_registered_by_builtin_plugin():
    methods = get_methods()
    assert BUILTIN <= set(methods)
    assert {methods[n].plugin for n in BUILTIN} == {"smfa_methods.builtin"}


class _Good(Method):
    name = "good"
    description = "a test method"
    options = {"x": 1.0}

    def compute_loss(self, model, inputs, trainer):
        return 0


@pytest.mark.parametrize(
    "obj, msg",
    [
        (_Good, "takes a method instance"),
        (object(), "identifier-like `name`"),
        (type("M", (), {"name": "m", "description": 3, "options": {}})(), "`description` must be a str"),
        (type("M", (), {"name": "m", "description": "", "options": []})(), "`options` must be a dict"),
        (type("M", (), {"name": "m", "description": "", "options": {}})(), "needs a callable"),
    ],
)
def test_register_validates(obj, msg):
    with pytest.raises(TypeError, match=msg):
        validate_method(obj)


def test_register_from_a_plugin_object_and_duplicates():
    class Plugin:
        @hookimpl
        def register_methods(self, register):
            register(_Good())

    pm = get_plugin_manager()
    pm.register(Plugin(), name="test-plugin")
    assert get_methods()["good"].plugin == "test-plugin"

    class Dup:
        @hookimpl
        def register_methods(self, register):
            register(type("G", (_Good,), {"name": "idk"})())

    pm.register(Dup(), name="dup")
    methods = get_methods()  # the duplicate is the plugin's error, never the built-in's
    assert methods["idk"].plugin == "smfa_methods.builtin" and methods["good"].plugin == "test-plugin"
    assert "name 'idk' already registered by smfa_methods.builtin" in broken_plugins()["dup"]


def test_unknown_method_lists_available():
    with pytest.raises(MethodError, match=r"unknown method 'nope'; available: .*ga_diff.*smfa"):
        get_method("nope")


def test_options_validation():
    m = get_method("smfa")
    assert m.resolve_options({"k": 2}) == {"k": 2.0, "mode": "both", "eps": 1e-8, "k_rules": [],
                                           "per_modality": False, "k_image": -1.0, "k_text": -1.0,
                                           "variant": "paper"}
    with pytest.raises(MethodError, match="no option zz; valid: eps, k, k_image, k_rules, k_text, mode, per_modality, variant"):
        m.resolve_options({"zz": 1})
    with pytest.raises(MethodError, match="must be a number"):
        m.resolve_options({"k": "big"})


def test_hookspec_project_name():
    assert isinstance(get_plugin_manager(), pluggy.PluginManager)
    assert get_plugin_manager().project_name == "smfa"


def _cli():
    from smfa_cli.main import cli

    return cli


def test_cli_methods_json():
    res = CliRunner().invoke(_cli(), ["methods", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert BUILTIN <= set(rows) and rows["smfa"]["plugin"] == "smfa_methods.builtin"
    res = CliRunner().invoke(_cli(), ["methods"])
    assert "kl_min" in res.output and "[smfa_methods.builtin]" in res.output


def test_cli_unlearn_user_errors(tiny_model, text_data, tmp_path):
    model = str(tiny_model("llama"))
    base = ["unlearn", "--model", model, "--retain", str(text_data[1]), "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(_cli(), [*base, "--method", "nope", "--forget", str(text_data[0])])
    assert res.exit_code != 0 and "available:" in res.output and "ga_diff" in res.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"answer": "a"}\n')
    res = CliRunner().invoke(_cli(), [*base, "--method", "idk", "--forget", str(bad)])
    assert res.exit_code != 0 and f"{bad}:2: missing required key 'question'" in res.output
    res = CliRunner().invoke(_cli(), [*base, "--method", "idk", "--forget", str(text_data[0]), "--set", "zz=1"])
    assert res.exit_code != 0 and "no option zz" in res.output
    assert "Traceback" not in res.output
