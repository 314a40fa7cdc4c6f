"""The shared loop moves things the right way, exports readable deltas, and resumes exactly."""

from __future__ import annotations

import shutil

import pytest
import torch

from smfa_methods.api import unlearn
from smfa_methods.collators import ChatEncoder, SFTCollator
from smfa_methods.data import load_jsonl
from smfa_methods.losses import ce
from smfa_methods.method import TrainConfig
from smfa_methods.models import DELTA_FILE, load_model
from smfa_methods.refusals import is_refusal


def _forget_ce(model_dir, data) -> float:
    loaded = load_model(model_dir)
    batch = SFTCollator(loaded.processor).encode_batch(load_jsonl(data))
    with torch.no_grad():
        return ce(loaded.model, batch).item()


def test_ga_diff_raises_forget_loss(tiny_model, text_data, tmp_path):
    base = tiny_model("llama")
    cfg = TrainConfig(mode="full", lr=1e-2, max_steps=6, batch_size=4)
    res = unlearn("ga_diff", model=base, forget=text_data[0], retain=text_data[1], out=tmp_path, train=cfg)
    assert _forget_ce(res.model, text_data[0]) > _forget_ce(base, text_data[0]) + 0.1
    assert (tmp_path / "delta" / DELTA_FILE).exists() and (tmp_path / "run.json").exists()


def test_idk_makes_refusals(tiny_model, text_data, tmp_path):
    # lm_head trains too: the tiny model's random output layer cannot otherwise spell refusals fast
    cfg = TrainConfig(mode="full", lr=1e-2, max_steps=60, batch_size=4, logging_steps=1000,
                      target=r".*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj|lm_head)$")
    res = unlearn("idk", model=tiny_model("llama"), forget=text_data[0], retain=text_data[1], out=tmp_path, train=cfg)
    loaded = load_model(res.model)
    enc = ChatEncoder(loaded.processor)
    refusals = 0
    for ex in load_jsonl(text_data[0]):
        ids = enc.encode_prompt(ex)["input_ids"]
        gen = loaded.model.generate(ids, max_new_tokens=64, do_sample=False)
        refusals += is_refusal(enc.tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True))
    assert refusals >= 3


def test_full_delta_uses_on_disk_names_and_reproduces_model(tiny_model, vlm_data, tmp_path):
    """Dense delta keys are what save_pretrained writes; base + delta == the trained model."""
    from safetensors.torch import load_file

    base = tiny_model("qwen2_5_vl")
    cfg = TrainConfig(mode="full", lr=1e-3, max_steps=1, batch_size=2)
    res = unlearn("ga_diff", model=base, forget=vlm_data[0], retain=vlm_data[1], out=tmp_path, train=cfg)
    delta = load_file(str(res.deltas["delta"] / DELTA_FILE))
    base_sd, out_sd = load_file(str(base / "model.safetensors")), load_file(str(res.model / "model.safetensors"))
    assert delta and set(delta) <= set(base_sd)
    assert all(k.startswith("model.layers.") for k in delta)  # Qwen's on-disk names
    for k, d in delta.items():
        torch.testing.assert_close(base_sd[k] + d, out_sd[k], rtol=0, atol=1e-6)
    untouched = set(base_sd) - set(delta)
    assert all(torch.equal(base_sd[k], out_sd[k]) for k in untouched)


def test_kl_min_lora_reference_is_adapter_disabled(tiny_model, vlm_data, tmp_path):
    """Under LoRA the original's logits come from the same model with the adapter off."""
    from peft import PeftModel

    base = tiny_model("llava_onevision")
    cfg = TrainConfig(mode="lora", lr=1e-2, max_steps=2, batch_size=2)
    res = unlearn("kl_min", model=base, forget=vlm_data[0], retain=vlm_data[1], out=tmp_path, train=cfg)
    orig = load_model(base)
    peft_model = PeftModel.from_pretrained(load_model(base).model, str(res.deltas["delta"]))
    batch = SFTCollator(orig.processor).encode_batch(load_jsonl(vlm_data[1]))
    with torch.no_grad(), peft_model.disable_adapter():
        ref = peft_model(**batch).logits
    with torch.no_grad():
        torch.testing.assert_close(ref, orig.model(**batch).logits)
        assert not torch.allclose(peft_model(**batch).logits, ref)  # the adapter did learn something


def test_resume_equals_uninterrupted(tiny_model, text_data, tmp_path):
    base = tiny_model("llama")
    cfg = TrainConfig(mode="lora", lr=5e-3, max_steps=4, batch_size=2, save_steps=2, seed=3)
    full = unlearn("idk", model=base, forget=text_data[0], retain=text_data[1], out=tmp_path / "a", train=cfg)
    # An "interrupted" run: only the step-2 checkpoint exists, then --resume.
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / "checkpoint-2", tmp_path / "b" / "checkpoints" / "checkpoint-2")
    cfg.resume = True
    resumed = unlearn("idk", model=base, forget=text_data[0], retain=text_data[1], out=tmp_path / "b", train=cfg)
    from safetensors.torch import load_file

    a = load_file(str(full.deltas["delta"] / "adapter_model.safetensors"))
    b = load_file(str(resumed.deltas["delta"] / "adapter_model.safetensors"))
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-7)
    assert not torch.allclose(a[next(k for k in a if "lora_B" in k)], torch.zeros(1))


@pytest.mark.parametrize("kind", ["llama", "qwen2_5_vl"])
def test_train_command(kind, tiny_model, text_data, vlm_data, tmp_path):
    from click.testing import CliRunner

    from smfa_cli.main import cli

    data = text_data[0] if kind == "llama" else vlm_data[0]
    args = ["train", "--model", str(tiny_model(kind)), "--data", str(data), "--out", str(tmp_path),
            "--max-steps", "2", "--batch-size", "2", "--full", "--lr", "1e-3"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "model" / "config.json").exists()
    load_model(tmp_path / "model")
