"""One method under 2-process DDP on CPU (gloo), through `smfa unlearn`: two processes really
ran, each trained on its own half of the data, and DDP kept their models identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

# Launched by torch.distributed.run: registers a kl_min that reports, from inside each
# process, its rank/world size, the dataset indices it loaded, the micro-batches it trained
# on and its final trainable weights; then runs the real CLI.
SPY = '''
import json
import sys

import torch
from safetensors.torch import save_file
from transformers import TrainerCallback

from smfa_cli.main import cli
from smfa_methods.data import PairedDataset
from smfa_methods.hookspecs import hookimpl
from smfa_methods.methods.kl_min import KLMin
from smfa_methods.plugins import get_plugin_manager

SEEN, BATCHES = [], [0]


class RecordingPairs(PairedDataset):
    def __getitem__(self, i):
        SEEN.append(int(i))
        return super().__getitem__(i)


class Report(TrainerCallback):
    def __init__(self, out):
        self.out = out

    def on_train_end(self, args, state, control, model=None, **kwargs):
        dist = torch.distributed
        info = {"rank": args.process_index, "world_size": args.world_size,
                "dist_world_size": dist.get_world_size() if dist.is_initialized() else 1,
                "backend": dist.get_backend() if dist.is_initialized() else None,
                "batches": BATCHES[0], "indices": SEEN, "global_step": state.global_step}
        (self.out / f"rank{args.process_index}.json").write_text(json.dumps(info))
        params = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(params, str(self.out / f"rank{args.process_index}.safetensors"))


class SpyKLMin(KLMin):
    name = "spy_kl_min"
    description = "kl_min reporting what each process saw"

    def make_dataset(self, job):
        return RecordingPairs(job.forget, job.retain, seed=job.train.seed)

    def compute_loss(self, model, inputs, trainer):
        BATCHES[0] += 1
        return super().compute_loss(model, inputs, trainer)

    def trainer_callbacks(self, job):
        return [Report(job.out)]


class Plugin:
    @hookimpl
    def register_methods(self, register):
        register(SpyKLMin())


get_plugin_manager().register(Plugin(), name="ddp-spy")
cli.main(sys.argv[1:], prog_name="smfa")
'''


def test_kl_min_two_process_ddp(tiny_model, text_data, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "out"
    script = tmp_path / "ddp_spy.py"
    script.write_text(SPY)
    # 4 forget examples, 2 processes x batch 1: one epoch is exactly 2 optimizer steps.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           "unlearn", "--method", "spy_kl_min", "--model", str(tiny_model("llama")),
           "--forget", str(text_data[0]), "--retain", str(text_data[1]), "--out", str(out),
           "--max-steps", "2", "--batch-size", "1", "--logging-steps", "1", "--lr", "1e-2"]
    env = {**os.environ, "SMFA_PLUGINS": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert res.returncode == 0, res.stderr[-4000:]

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, info in enumerate(ranks):
        assert (info["rank"], info["world_size"], info["dist_world_size"]) == (r, 2, 2)
        assert info["backend"] == "gloo"
        assert info["batches"] == 2 and info["global_step"] == 2  # 2 micro-batches each, one per step
        assert len(info["indices"]) == 2
    # Sharded: disjoint halves that together cover the forget set once.
    assert not set(ranks[0]["indices"]) & set(ranks[1]["indices"])
    assert set(ranks[0]["indices"]) | set(ranks[1]["indices"]) == {0, 1, 2, 3}

    # Different data per rank, yet identical weights: the gradients were all-reduced.
    w0, w1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert set(w0) == set(w1) and any("lora_B" in k and v.abs().sum() > 0 for k, v in w0.items())
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)

    info = json.loads((out / "run.json").read_text())  # written once, by the main process
    assert info["method"] == "spy_kl_min" and info["metrics"]["global_step"] == 2
    assert info["base_model"] == str(tiny_model("llama")) and info["model"] == str(out / "model")
    ad = load_file(str(out / "delta" / "adapter_model.safetensors"))
    assert all(torch.isfinite(v).all() for v in ad.values())
    b0 = next(v for k, v in w0.items() if "lora_B" in k and v.abs().sum() > 0)
    assert any(torch.equal(v, b0) for v in ad.values())  # the exported adapter is the synced one
