"""Plugins isolated: one that fails to import or to register is reported once under its name
(`smfa methods`, `smfa judges`) and everything else, built-ins first, keeps working. The
broken plugin is a real distribution (a dist-info with an `smfa` entry point on sys.path),
found by importlib.metadata like an installed one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from smfa_methods import Method, hookimpl
from smfa_methods.plugins import broken_plugins, get_plugin_manager, reset_plugin_manager
from smfa_methods.registry import get_methods

ROOT = Path(__file__).resolve().parents[2]


def _cli():
    from smfa_cli.main import cli

    return cli


def _distribution(root: Path, name: str, module_source: str) -> Path:
    """A minimal installed distribution `name` whose `smfa` entry point is module `name`."""
    (root / f"{name}.py").write_text(module_source)
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[smfa]\n{name} = {name}\n")
    return root


@pytest.fixture
def broken_import(tmp_path, monkeypatch):
    root = _distribution(tmp_path, "smfa_badplug", "import smfa_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("SMFA_PLUGINS", "smfa_badplug")
    reset_plugin_manager()
    return root


def test_plugin_that_fails_to_import_is_listed_and_the_rest_works(broken_import):
    r = CliRunner().invoke(_cli(), ["methods"])
    assert r.exit_code == 0, r.output
    assert "smfa_methods.builtin" in r.output and r.output.count("ModuleNotFoundError") >= 1
    assert "broken plugin smfa_badplug: failed to load: ModuleNotFoundError: No module named " \
           "'smfa_no_such_dependency'" in r.output
    assert "idk" in get_methods()


def test_smfa_help_works_with_a_plugin_that_fails_to_import(broken_import):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken_import), str(ROOT)]),
           "SMFA_PLUGINS": "smfa_badplug"}
    res = subprocess.run([sys.executable, "-m", "smfa_cli.main", "--help"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "unlearn" in res.stdout and "Traceback" not in res.stderr
    assert res.stderr.count("plugin 'smfa_badplug' is broken") == 1, res.stderr


def _plugin(name: str, **hooks):
    get_plugin_manager().register(type(name, (), {k: hookimpl(v) for k, v in hooks.items()})(), name=name)


class _Good(Method):
    name = "good"
    description = "a fine method"
    options: dict = {}

    def compute_loss(self, model, inputs, trainer):
        raise NotImplementedError


def test_registering_a_class_names_the_plugin_and_keeps_builtins():
    _plugin("classy", register_methods=lambda self, register: register(_Good))
    methods = get_methods()
    assert "idk" in methods and "good" not in methods
    assert "register() takes a method instance, got the class _Good" in broken_plugins()["classy"]
    r = CliRunner().invoke(_cli(), ["methods", "--json"])
    rows = json.loads(r.output)
    assert {"name": None, "plugin": "classy", "error": broken_plugins()["classy"]} in rows


def test_a_hook_that_raises_is_the_plugins_error_only():
    def boom(self, register):
        register(_Good())
        raise RuntimeError("half-registered")

    _plugin("raiser", register_methods=boom)
    assert {"idk", "good"} <= set(get_methods())  # what it registered before failing stays
    assert broken_plugins()["raiser"] == "register_methods raised RuntimeError: half-registered"


def test_smfa_judges_lists_judges_and_broken_plugins():
    _plugin("badjudge", register_judges=lambda self, register: register(object()))
    r = CliRunner().invoke(_cli(), ["judges"])
    assert r.exit_code == 0, r.output
    assert "heuristic" in r.output and "[smfa_eval.judges.builtin]" in r.output
    assert "broken plugin badjudge: register_judges: judge <object object" in r.output


def test_methods_verbose_shows_typed_options_with_help():
    from smfa_methods import Option

    class Typed(_Good):
        name = "typed"
        options = {"beta": Option(0.1, "inverse temperature of the preference loss", min=0.0, max=10.0)}

    _plugin("typed-plugin", register_methods=lambda self, register: register(Typed()))
    r = CliRunner().invoke(_cli(), ["methods", "--verbose"])
    assert "beta: float in [0, 10], default 0.1: inverse temperature of the preference loss" in r.output
    with pytest.raises(Exception, match=r"option 'beta' of 'typed' must be in \[0, 10\], got '11'"):
        Typed().resolve_options({"beta": "11"})


def test_unknown_method_of_a_broken_plugin_says_the_plugin_is_broken(broken_import, tmp_path):
    (tmp_path / "model").mkdir()
    r = CliRunner().invoke(_cli(), ["unlearn", "--method", "badmethod", "--model", str(tmp_path / "model"),
                                    "--forget", str(tmp_path / "f.jsonl"), "--retain", str(tmp_path / "r.jsonl"),
                                    "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "unknown method 'badmethod'" in r.output
    assert "(broken plugins: smfa_badplug; see `smfa methods`)" in r.output


def test_a_judge_that_fails_to_start_is_a_one_line_error():
    from smfa_eval.judges import JudgeError, get_judge

    class Crashy:
        name = "crashy"

        def __init__(self, **options):
            raise ConnectionError("no endpoint")

    _plugin("crashy-plugin", register_judges=lambda self, register: register(Crashy))
    with pytest.raises(JudgeError, match="judge 'crashy' failed to start: ConnectionError: no endpoint"):
        get_judge("crashy")
