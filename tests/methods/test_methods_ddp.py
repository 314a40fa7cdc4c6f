"""Two CPU processes on gloo, launched once for the tests below.

- kl_min under DDP, through `smfa unlearn` (the shared loop) started by `accelerate launch` with
  the shipped configs/accelerate/ddp.yaml: two processes really ran, each
  trained on its own half of the data, DDP kept their models identical, and the run equals a
  single-process one at the same effective batch (batch 1 x --grad-accum 2): the same losses and
  the same adapter. kl_min's reference (the adapter disabled) works under DDP.
- npo under FSDP2 (torch.distributed.fsdp.fully_shard), in the same two processes: the same
  losses and LoRA weights as one process at the same effective batch, the reference taken by
  disabling the adapter of the sharded model (no second copy per rank). The shared loop cannot
  run FSDP on a CPU host: accelerate (1.15) turns FSDP on only for GPU-like multi-device runs and
  falls back to plain multi-CPU DDP there, so this drives the sharded model with the loop's own
  pieces (the method's loss, the collator, UnlearnTrainer's reference) in a minimal loop;
  `accelerate launch --config_file configs/accelerate/fsdp2.yaml` is the GPU path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
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
                "batches": BATCHES[0], "indices": SEEN, "global_step": state.global_step,
                "losses": [h["loss"] for h in state.log_history if "loss" in h]}
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


if __name__ == "__main__":
    import os

    get_plugin_manager().register(Plugin(), name="ddp-spy")
    cli.main(sys.argv[1:], prog_name="smfa", standalone_mode=False)
    fsdp = os.environ.get("SMFA_TEST_FSDP")
    if fsdp:  # then FSDP2, in the same two processes (one launch for both tests)
        import importlib.util

        script, *args = fsdp.split("|")
        spec = importlib.util.spec_from_file_location("fsdp_loop", script)
        loop = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loop)
        loop.train(*args)
'''

# The FSDP2 loop: run by the launched processes after the CLI, and in-process for the baseline.
FSDP_LOOP = r'''
import functools
import json
import sys
import types
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from smfa_methods.collators import PairedCollator
from smfa_methods.data import PairedDataset, load_jsonl
from smfa_methods.methods.npo import NPO
from smfa_methods.methods.rmu import decoder_layers
from smfa_methods.models import load_model, prepare_for_training
from smfa_methods.trainer import UnlearnTrainer


def trainer_shim(method):
    """What compute_loss reads from the trainer, with UnlearnTrainer's own reference code."""
    t = types.SimpleNamespace(method=method, method_options=method.resolve_options({}), ref_model=None,
                              accelerator=types.SimpleNamespace(unwrap_model=lambda m: m),
                              record=lambda **kw: None)
    t.reference_model = functools.partial(UnlearnTrainer.reference_model, t)
    t.reference_logits = functools.partial(UnlearnTrainer.reference_logits, t)
    return t


def train(model_dir, forget, retain, out, steps=2):
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    torch.manual_seed(0)
    loaded = load_model(model_dir)
    model = prepare_for_training(loaded.model, "lora")
    info = {"world": world}
    if world > 1:
        from torch.distributed.fsdp import FSDPModule, fully_shard

        for layer in decoder_layers(model):
            fully_shard(layer)
        fully_shard(model)
        info["fsdp_modules"] = sum(isinstance(m, FSDPModule) for m in model.modules())
        w = next(p for n, p in model.named_parameters() if n.endswith("q_proj.base_layer.weight"))
        info["sharded"] = w.to_local().numel() < w.numel()
    method = NPO()
    tr = trainer_shim(method)
    ds = PairedDataset(load_jsonl(forget), load_jsonl(retain), seed=0)
    coll = PairedCollator(loaded.processor)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for step in range(steps):
        pair = [2 * step, 2 * step + 1]  # the step's effective batch: one example per rank
        if world > 1:
            loss = method.compute_loss(model, coll([ds[pair[rank]]]), tr)
            loss.backward()
            mean = loss.detach().clone()
            dist.all_reduce(mean)
            losses.append(mean.item() / world)
        else:
            total = 0.0
            for i in pair:
                loss = method.compute_loss(model, coll([ds[i]]), tr) / 2
                loss.backward()
                total += loss.item()
            losses.append(total)
        opt.step()
        opt.zero_grad()
    lora = {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().contiguous()
            for n, p in model.named_parameters() if p.requires_grad}
    # the loop's export path: gather (a collective), then the main process exports the whole model
    from smfa_methods import models
    from smfa_methods.distributed import sharding_of, whole_model
    from smfa_methods.method import Job, TrainConfig

    info["sharding"] = sharding_of(model)
    shim = types.SimpleNamespace(model=model, is_world_process_zero=lambda: rank == 0)
    whole = whole_model(shim, Job(Path(model_dir), Path(out), [], [], TrainConfig(mode="lora")))
    assert (whole is None) == (rank != 0)
    if rank == 0:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "info.json").write_text(json.dumps({**info, "losses": losses}))
        save_file(lora, str(out / "lora.safetensors"))
        models.export_delta(whole, out / "delta")
'''


def _load(path, name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def two_processes(tiny_model, text_data, tmp_path_factory):
    """One `accelerate launch` of 2 processes: the DDP CLI run (OUT/out), then the FSDP2 loop (OUT/fsdp)."""
    tmp = tmp_path_factory.mktemp("two-processes")
    script, loop = tmp / "ddp_spy.py", tmp / "fsdp_loop.py"
    script.write_text(SPY)
    loop.write_text(FSDP_LOOP)
    # 4 forget examples, 2 processes x batch 1: one epoch is exactly 2 optimizer steps.
    # launched the documented way: accelerate with the shipped DDP config (gloo on a CPU host)
    config = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "ddp.yaml"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "2",
           "--main_process_port", "0", str(script),
           "unlearn", "--method", "spy_kl_min", "--model", str(tiny_model("llama")),
           "--forget", str(text_data[0]), "--retain", str(text_data[1]), "--out", str(tmp / "out"),
           "--max-steps", "2", "--batch-size", "1", "--logging-steps", "1", "--lr", "1e-2"]
    fsdp_args = [str(tiny_model("llama")), str(text_data[0]), str(text_data[1])]
    env = {**os.environ, "SMFA_PLUGINS": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "SMFA_TEST_FSDP": "|".join([str(loop), *fsdp_args, str(tmp / "fsdp")])}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert res.returncode == 0, res.stderr[-4000:]
    return {"tmp": tmp, "script": script, "loop": loop, "fsdp_args": fsdp_args}


@pytest.mark.slow
def test_kl_min_two_process_ddp(two_processes, tiny_model, text_data, tmp_path):
    from safetensors.torch import load_file

    out, script = two_processes["tmp"] / "out", two_processes["script"]

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

    # One process, the same effective batch (1 x --grad-accum 2): the same data order, losses, adapter.
    from smfa_methods.api import unlearn
    from smfa_methods.method import TrainConfig

    spy = _load(script, "ddp_spy")
    single = tmp_path / "single"
    unlearn(spy.SpyKLMin(), model=tiny_model("llama"), forget=text_data[0], retain=text_data[1], out=single,
            train=TrainConfig(max_steps=2, batch_size=1, grad_accum=2, logging_steps=1, lr=1e-2))
    one = json.loads((single / "rank0.json").read_text())
    assert one["world_size"] == 1 and one["batches"] == 4
    ddp_order = [i for pair in zip(ranks[0]["indices"], ranks[1]["indices"], strict=True) for i in pair]
    assert one["indices"] == ddp_order  # rank r took micro-batch r of each step
    assert one["losses"] == pytest.approx(ranks[0]["losses"], rel=1e-5) and len(one["losses"]) == 2
    ad1 = load_file(str(single / "delta" / "adapter_model.safetensors"))
    assert set(ad1) == set(ad)
    for k in ad:
        torch.testing.assert_close(ad1[k], ad[k], rtol=1e-5, atol=1e-6)


def _fsdp2_available() -> bool:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return False
    return torch.distributed.is_available() and torch.distributed.is_gloo_available()


@pytest.mark.skipif(not _fsdp2_available(), reason="this torch has no FSDP2 (fully_shard) or no gloo")
@pytest.mark.slow
def test_npo_fsdp2_two_processes_equal_one(two_processes, tmp_path):
    from safetensors.torch import load_file

    _load(two_processes["loop"], "fsdp_loop").train(*two_processes["fsdp_args"], str(tmp_path / "single"))
    fsdp_dir = two_processes["tmp"] / "fsdp"
    fsdp = json.loads((fsdp_dir / "info.json").read_text())
    one = json.loads((tmp_path / "single" / "info.json").read_text())
    assert fsdp["world"] == 2 and fsdp["fsdp_modules"] == 3 and fsdp["sharded"]  # 2 decoder layers + the root
    assert fsdp["sharding"] == "fsdp2" and one["world"] == 1 and one["sharding"] is None
    assert fsdp["losses"] == pytest.approx(one["losses"], rel=1e-5)
    a, b = load_file(str(fsdp_dir / "lora.safetensors")), load_file(str(tmp_path / "single" / "lora.safetensors"))
    assert set(a) == set(b) and any("lora_B" in k and v.abs().sum() > 0 for k, v in a.items())
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # the exported adapters (gathered from the shards vs the one process's) are the same too
    ea = load_file(str(fsdp_dir / "delta" / "adapter_model.safetensors"))
    eb = load_file(str(tmp_path / "single" / "delta" / "adapter_model.safetensors"))
    assert set(ea) == set(eb) and len(ea) == len(a)
    for k in ea:
        torch.testing.assert_close(ea[k], eb[k], rtol=1e-5, atol=1e-6)
