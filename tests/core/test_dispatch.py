"""Backend selection: auto/explicit choice, clear errors for unavailable backends, and an
`import smfa_core` that stays light (no CUDA initialisation, no transformers/peft)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

import smfa_core
from smfa_core import backends
from smfa_core.backends import reference
from smfa_core.errors import BackendUnavailable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(backends, "_cache", {})
    monkeypatch.setattr(backends, "_reasons", {})


def _run(code: str, env_extra: dict | None = None, drop: tuple = ()) -> str:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_extra or {})
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def test_import_does_not_initialise_cuda_or_load_training_stack():
    out = _run("import sys, torch, smfa_core\n"
               "a = torch.cuda.is_initialized()\n"
               "smfa_core.available_backends()\n"
               "print(a, torch.cuda.is_initialized(), 'transformers' in sys.modules, 'peft' in sys.modules,\n"
               "      'triton' in sys.modules)")
    assert out == "False False False False False", out  # triton loads with the first triton kernel call


def test_available_backends_names_every_backend():
    av = smfa_core.available_backends()
    assert set(av) == set(backends.NAMES)
    assert av["reference"].startswith("ok")
    for name, line in av.items():
        assert line.startswith(("ok: ", "unavailable: ")), (name, line)


def test_auto_on_cpu_prefers_compiled_then_reference(fresh_registry):
    from smfa_core import _ext

    be = backends.get_backend("auto", "cpu", quiet=True)
    # the expectation from the build itself, not from the registry under test
    assert be.NAME == ("cpu" if _ext.C is not None else "reference")


def test_auto_falls_back_to_reference_and_says_so(fresh_registry, monkeypatch):
    monkeypatch.setitem(backends.AUTO_ORDER, "cpu", ("triton_missing_for_test", "reference"))
    monkeypatch.setitem(backends._cache, "triton_missing_for_test", None)
    monkeypatch.setitem(backends._reasons, "triton_missing_for_test", "not here")
    with pytest.warns(UserWarning, match="reference"):
        be = backends.get_backend("auto", "cpu")
    assert be is reference


def test_explicit_reference_and_unknown(fresh_registry):
    assert backends.get_backend("reference", "cpu") is reference
    with pytest.raises(BackendUnavailable, match="unknown backend 'nope'"):
        backends.get_backend("nope", "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_explicit_cuda_unavailable_names_what_is_missing(fresh_registry):
    with pytest.raises(BackendUnavailable, match="backend 'cuda' is not available: .*(CUDA|_C)"):
        backends.get_backend("cuda", "cuda")


def test_cuda_backend_reason_order(monkeypatch):
    from smfa_core import _ext
    from smfa_core.backends import cuda

    monkeypatch.setattr(_ext, "C", None)
    monkeypatch.setattr(_ext, "error", "no .so")
    assert cuda.available() == (False, "smfa_core._C not built (no .so)")
    monkeypatch.setattr(_ext, "C", object())
    monkeypatch.setattr(cuda, "built_with_cuda", lambda: False)
    ok, why = cuda.available()
    assert not ok and "without CUDA kernels" in why
    monkeypatch.setattr(cuda, "built_with_cuda", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cuda.available() == (False, "no CUDA device (torch.cuda.is_available() is False)")


def test_triton_not_installed(monkeypatch):
    from smfa_core.backends import triton as tb

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "triton" else real(name, *a))
    ok, why = tb.available()
    assert not ok and why.startswith("triton not installed")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_triton_without_gpu_or_interpreter_is_unavailable():
    out = _run("import smfa_core\n"
               "from smfa_core.backends import get_backend\n"
               "try:\n"
               "    get_backend('triton', 'cuda')\n"
               "except smfa_core.BackendUnavailable as e:\n"
               "    print(e)\n", drop=("TRITON_INTERPRET",))
    assert out == "backend 'triton' is not available: no GPU and TRITON_INTERPRET unset", out


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_triton_under_interpreter_runs_on_cpu():
    out = _run("from smfa_core.backends import get_backend\n"
               "print(get_backend('triton', 'cpu').NAME, get_backend('triton', 'cpu').DEVICES)",
               env_extra={"TRITON_INTERPRET": "1"})
    assert out == "triton ('cuda', 'cpu')"


def test_backend_on_a_device_it_does_not_support(fresh_registry):
    with pytest.raises(BackendUnavailable, match="does not run on 'mps'"):
        backends.get_backend("reference", "mps")


def test_every_backend_module_has_the_interface():
    for name in backends.NAMES:
        mod = importlib.import_module(f"smfa_core.backends.{name}")
        assert mod.NAME == name
        assert isinstance(mod.DEVICES, tuple) and mod.DEVICES
        for fn in ("available", "sumsq_blocks", "sculpt_chunk", "sweep_counts"):
            assert callable(getattr(mod, fn)), (name, fn)
        ok, why = mod.available()
        assert isinstance(ok, bool) and isinstance(why, str) and why
