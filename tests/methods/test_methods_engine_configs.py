"""The shipped launch configs (configs/accelerate, configs/deepspeed) are what accelerate and the
Trainer read. DeepSpeed itself cannot run here (no GPU; the package is not installed in this
environment), so its configs are checked for shape, and built into TrainingArguments only where
deepspeed imports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECT = {"ddp": "MULTI_GPU", "fsdp2": "FSDP", "deepspeed_zero2": "DEEPSPEED", "deepspeed_zero3": "DEEPSPEED"}


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ROOT / "configs" / "accelerate" / f"{name}.yaml"))
    assert cfg.distributed_type.value == EXPECT[name] and cfg.num_processes >= 2
    if name == "fsdp2":
        assert cfg.fsdp_config["fsdp_version"] == 2
        assert cfg.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    if name.startswith("deepspeed"):
        ds = json.loads((ROOT / cfg.deepspeed_config["deepspeed_config_file"]).read_text())
        assert ds["zero_optimization"]["stage"] == int(name[-1])
        # the CLI flags stay the one source of the batch, accumulation, clipping and precision
        for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
            assert ds[key] == "auto", key
        if name.endswith("3"):  # export gathers the partitioned weights (smfa_methods.distributed)
            assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed here")
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_config_builds_training_arguments(stage, tmp_path):
    from smfa_methods.method import TrainConfig
    from smfa_methods.trainer import training_arguments

    args = training_arguments(TrainConfig(), tmp_path)
    args.deepspeed = str(ROOT / "configs" / "deepspeed" / f"zero{stage}.json")
    args.__post_init__()
    assert args.hf_deepspeed_config.config["zero_optimization"]["stage"] == stage


def test_unsharded_models_export_as_they_are(tiny_model):
    from types import SimpleNamespace

    from smfa_methods.distributed import sharding_of, whole_model
    from smfa_methods.models import load_model

    model = load_model(tiny_model("llama")).model
    assert sharding_of(model) is None
    assert whole_model(SimpleNamespace(model=model, is_world_process_zero=lambda: True), None) is model
    assert whole_model(SimpleNamespace(model=model, is_world_process_zero=lambda: False), None) is None
