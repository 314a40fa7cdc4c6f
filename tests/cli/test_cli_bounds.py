"""Bounded everything: every numeric option is range-checked by click before any work
(finite, within bounds, a k-sweep of at most a few thousand points); a disk that fills while
writing is a one-line error with nothing published; SIGINT/SIGTERM print one line and exit
130/143 with nothing published (real processes: the signals are the point)."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import peft
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from tiny_models import build_model

from smfa_cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def deltas(tmp_path):
    g = torch.Generator().manual_seed(0)
    f = {f"model.layers.{i}.mlp.up_proj.weight": torch.randn(64, 64, generator=g) for i in range(2)}
    save_file(f, tmp_path / "f.safetensors")
    save_file({n: torch.randn(v.shape, generator=g) for n, v in f.items()}, tmp_path / "a.safetensors")
    return tmp_path


def _usage_error(args: list[str], option: str) -> None:
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, r.output  # click's usage error: before anything is read
    assert option in r.output and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("sweep", ["0:1e9:1e-9", "0:inf:1", "0:nan:1", "0:1:0", "-1:2:1"])
def test_k_sweep_is_bounded_and_finite(deltas, sweep):
    _usage_error(["inspect", "-f", str(deltas / "f.safetensors"), "-a", str(deltas / "a.safetensors"),
                  "--k-sweep", sweep], "--k-sweep")


@pytest.mark.parametrize("value", ["inf", "1e9", "1e15", "nan", "0", "-1"])
def test_chunk_mb_is_bounded(deltas, value):
    _usage_error(["sculpt", "-f", str(deltas / "f.safetensors"), "-a", str(deltas / "a.safetensors"),
                  "-o", str(deltas / "o"), "--chunk-mb", value], "--chunk-mb")
    _usage_error(["merge", "--base", str(deltas / "a.safetensors"), "-d", str(deltas / "f.safetensors"),
                  "-o", str(deltas / "o"), "--chunk-mb", value], "--chunk-mb")


@pytest.mark.parametrize("option, value", [("--k", "nan"), ("--k", "inf"), ("--k", "-1"), ("--k", "1e7"),
                                           ("--eps", "nan"), ("--eps", "-1"), ("--eps", "inf")])
def test_k_and_eps_are_bounded(deltas, option, value):
    _usage_error(["sculpt", "-f", str(deltas / "f.safetensors"), "-a", str(deltas / "a.safetensors"),
                  "-o", str(deltas / "o"), option, value], option)


@pytest.mark.parametrize("option, value", [("--epochs", "inf"), ("--lr", "nan"), ("--lora-r", "0"),
                                           ("--batch-size", "0"), ("--max-grad-norm", "nan"),
                                           ("--grad-accum", "0")])
def test_training_options_are_bounded(tmp_path, option, value):
    _usage_error(["train", "--model", str(tmp_path), "--data", str(tmp_path / "d.jsonl"), "--out",
                  str(tmp_path / "o"), option, value], option)


@contextlib.contextmanager
def _file_size_limit(nbytes: int):
    """Writes beyond `nbytes` fail with EFBIG, as on a full disk (SIGXFSZ ignored)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


def _adapter(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    peft.get_peft_model(build_model("llama"), peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                              init_lora_weights=False)).save_pretrained(path)
    return path


@pytest.mark.parametrize("emit", ["adapter", "mask"])
def test_disk_full_while_copying_adapter_files_or_writing_a_mask(tmp_path, emit):
    forget, anchor = _adapter(tmp_path / "f", 1), _adapter(tmp_path / "a", 2)
    limit = (tmp_path / "f" / "adapter_model.safetensors").stat().st_size // 2
    out = tmp_path / "out"
    args = ["sculpt", "-f", str(forget), "-a", str(anchor), "-o", str(out), "--emit", emit, "--no-progress"]
    if emit == "mask":  # the mask of a large dense delta is the big file here
        g = torch.Generator().manual_seed(0)
        big = {"w": torch.randn(1024, 1024, generator=g)}
        save_file(big, tmp_path / "bf.safetensors")
        save_file({"w": torch.randn(1024, 1024, generator=g)}, tmp_path / "ba.safetensors")
        args[2], args[4], limit = str(tmp_path / "bf.safetensors"), str(tmp_path / "ba.safetensors"), 64 * 1024
    with _file_size_limit(limit):
        r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert "File too large" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not out.exists() and not [e for e in os.listdir(tmp_path) if ".smfa-tmp-" in e]


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SMFA_PLUGINS": ""}
    return subprocess.Popen([sys.executable, "-m", "smfa_cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _catches_sigterm(pid: int) -> bool:
    """smfa's handlers are installed (Python itself never catches SIGTERM)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def _wait_for(cond, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_sigint_while_starting_is_one_line_and_exit_130(deltas):
    proc = _start(["inspect", "-f", str(deltas / "f.safetensors"), "-a", str(deltas / "a.safetensors")])
    _wait_for(lambda: _catches_sigterm(proc.pid), proc)  # handlers in, torch still importing
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip() == "smfa: interrupted by SIGINT; nothing was published"


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_a_run_publishes_nothing(tmp_path, sig, code):
    g = torch.Generator().manual_seed(0)
    f = {f"layers.{i}.w": torch.randn(1024, 1024, generator=g) for i in range(8)}
    save_file(f, tmp_path / "f.safetensors")
    save_file({n: torch.randn(v.shape, generator=g) for n, v in f.items()}, tmp_path / "a.safetensors")
    out = tmp_path / "out"
    proc = _start(["sculpt", "-f", str(tmp_path / "f.safetensors"), "-a", str(tmp_path / "a.safetensors"),
                   "-o", str(out), "--backend", "reference", "--chunk-mb", "0.25", "--no-progress"])  # slow: seconds
    _wait_for(lambda: any(".smfa-tmp-" in e for e in os.listdir(tmp_path)), proc)  # mid-run
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == f"smfa: interrupted by {sig.name}; nothing was published", err
    assert "Traceback" not in err, err
    assert not out.exists() and not [e for e in os.listdir(tmp_path) if ".smfa-" in e], (err, os.listdir(tmp_path))


@pytest.mark.parametrize("cmd", [["bench", "build", "--out", "b"], ["reproduce", "--dry-run"]])
def test_seeds_are_bounded(tmp_path, cmd):
    _usage_error([*cmd, "--seed", "-1"], "--seed")
