"""One method under 2-process DDP on CPU (gloo): the loop is distributed-safe."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch


def test_kl_min_two_process_ddp(tiny_model, text_data, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "smfa_cli.main", "unlearn", "--method", "kl_min", "--model", str(tiny_model("llama")),
           "--forget", str(text_data[0]), "--retain", str(text_data[1]), "--out", str(out),
           "--max-steps", "2", "--batch-size", "1", "--logging-steps", "1"]
    env = {**os.environ, "SMFA_PLUGINS": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert res.returncode == 0, res.stderr[-4000:]
    info = json.loads((out / "run.json").read_text())
    assert info["metrics"]["global_step"] == 2
    from safetensors.torch import load_file

    ad = load_file(str(out / "delta" / "adapter_model.safetensors"))
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in ad.items())
    assert all(torch.isfinite(v).all() for v in ad.values())
