"""`smfa sculpt / merge / inspect / kernels` through click's runner and as real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from smfa_cli.main import cli

SMFA = [sys.executable, "-m", "smfa_cli.main"]


@pytest.fixture
def deltas(tmp_path):
    g = torch.Generator().manual_seed(0)
    f = {f"model.layers.{i}.mlp.up_proj.weight": torch.randn(96, 130, generator=g).to(torch.bfloat16) for i in range(3)}
    a = {n: torch.randn(v.shape, generator=g).to(torch.bfloat16) for n, v in f.items()}
    save_file(f, tmp_path / "f.safetensors")
    save_file(a, tmp_path / "a.safetensors")
    return tmp_path


def test_sculpt_cli_writes_delta_and_summary(deltas):
    r = CliRunner().invoke(cli, ["sculpt", "-f", str(deltas / "f.safetensors"), "-a", str(deltas / "a.safetensors"),
                                 "--k", "1.5", "-o", str(deltas / "o"), "--report", str(deltas / "r.json")])
    assert r.exit_code == 0, r.output
    assert "masked" in r.output and "total: 3 tensors" in r.output
    assert set(load_file(deltas / "o" / "delta.safetensors")) == {f"model.layers.{i}.mlp.up_proj.weight" for i in range(3)}
    rep = json.loads((deltas / "r.json").read_text())
    assert rep["options"]["k"] == 1.5 and len(rep["tensors"]) == 3


def test_sculpt_cli_json(deltas):
    r = CliRunner().invoke(cli, ["sculpt", "-f", str(deltas / "f.safetensors"), "-a", str(deltas / "a.safetensors"),
                                 "-o", str(deltas / "o"), "--json", "--mode", "conflict"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["options"]["mode"] == "conflict"
    assert rep["totals"]["masked"] == rep["totals"]["conflict"] > 0


def test_inspect_cli_table_json_plot(deltas):
    r = CliRunner().invoke(cli, ["inspect", "-f", str(deltas / "f.safetensors"), "-a", str(deltas / "a.safetensors"),
                                 "--k-sweep", "0:4:0.5", "--plot", str(deltas / "fig.png"),
                                 "--out-json", str(deltas / "sweep.json")])
    assert r.exit_code == 0, r.output
    assert "overall" in r.output and "lang.002" in r.output
    assert (deltas / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = json.loads((deltas / "sweep.json").read_text())
    assert res["ks"] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]


def test_kernels_list():
    r = CliRunner().invoke(cli, ["kernels", "list", "--json"])
    assert r.exit_code == 0
    assert json.loads(r.output)["reference"].startswith("ok")


@pytest.mark.parametrize("args,msg", [
    (["--backend", "cuda"], "backend 'cuda' is not available"),
    (["--emit", "merged"], "--emit merged needs --base"),
])
def test_bad_options_exit_1_without_traceback(deltas, args, msg):
    p = subprocess.run(SMFA + ["sculpt", "-f", str(deltas / "f.safetensors"), "-a", str(deltas / "a.safetensors"),
                               "-o", str(deltas / "o"), *args], capture_output=True, text=True)
    assert p.returncode == 1, p.stderr
    assert msg in p.stderr and "Traceback" not in p.stderr
    assert not (deltas / "o").exists()


def test_malformed_file_names_the_file(deltas):
    bad = deltas / "bad.safetensors"
    bad.write_bytes((deltas / "f.safetensors").read_bytes()[:-10])  # truncated
    p = subprocess.run(SMFA + ["sculpt", "-f", str(bad), "-a", str(deltas / "a.safetensors"), "-o", str(deltas / "o")],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "bad.safetensors" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run(SMFA + ["sculpt", "-f", str(deltas / "nope"), "-a", str(deltas / "a.safetensors"),
                               "-o", str(deltas / "o")], capture_output=True, text=True)
    assert p.returncode == 1 and "nope" in p.stderr and "Traceback" not in p.stderr


def test_kill_9_never_leaves_a_finished_looking_output(tmp_path):
    # Large enough that the run takes a while; killed at several moments.
    g = torch.Generator().manual_seed(0)
    f = {f"w{i}": torch.randn(1024, 2048, generator=g).to(torch.bfloat16) for i in range(12)}
    save_file(f, tmp_path / "f.safetensors")
    save_file({n: -v for n, v in f.items()}, tmp_path / "a.safetensors")
    killed_midway = 0
    for delay in (0.5, 1.5, 3.0):
        out = tmp_path / f"o{delay}"
        proc = subprocess.Popen(SMFA + ["sculpt", "-f", str(tmp_path / "f.safetensors"), "-a", str(tmp_path / "a.safetensors"),
                                        "-o", str(out), "--chunk-mb", "0.25", "--backend", "reference",
                                        "--emit", "delta", "--emit", "mask"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():  # finished before the kill: then it must be complete
            assert (out / "smfa_report.json").exists()
            assert len(load_file(out / "delta.safetensors")) == 12
        else:
            killed_midway += 1
            leftovers = [p for p in os.listdir(tmp_path) if p.startswith(".")]
            assert all("smfa-tmp" in p for p in leftovers)
    assert killed_midway >= 1
