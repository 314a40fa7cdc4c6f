"""End to end on real tiny VLMs: PEFT LoRA adapters in, a merged HF checkpoint out."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import load_model, saved_model

import smfa_core
from smfa_core.names import match_names

peft = pytest.importorskip("peft")

TARGETS = r".*language_model.*\.(q_proj|v_proj|down_proj)$"


def _adapter(base_dir, kind, out, seed):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = load_model(kind, base_dir)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False)
    pm = get_peft_model(model, cfg)
    pm.save_pretrained(out)
    deltas = {}
    for name, mod in pm.named_modules():
        if hasattr(mod, "get_delta_weight") and hasattr(mod, "lora_A") and "default" in mod.lora_A:
            deltas[name.removeprefix("base_model.model.") + ".weight"] = mod.get_delta_weight("default").detach()
    return deltas


@pytest.mark.parametrize("kind", ["llava_onevision", "qwen2_5_vl"])
def test_lora_sculpt_merged_loads_and_equals_base_plus_sculpted(tmp_path_factory, tmp_path, kind):
    base = saved_model(tmp_path_factory, kind)
    f = _adapter(base, kind, tmp_path / "f", 1)
    a = _adapter(base, kind, tmp_path / "a", 2)
    rep = smfa_core.sculpt(str(tmp_path / "f"), str(tmp_path / "a"), k=1.0, base=str(base),
                           out=str(tmp_path / "out"), emit=["merged", "delta"])
    assert len(rep.tensors) == len(f) > 0
    assert 0 < rep.totals()["masked"] < rep.totals()["numel"]
    merged = load_model(kind, tmp_path / "out")
    orig = load_model(kind, base)
    delta = load_file(tmp_path / "out" / "delta.safetensors")  # on-disk (checkpoint) names
    live = merged.state_dict()
    to_disk = match_names(list(f), list(delta), source_label="live", target_label="on-disk")
    changed = 0
    for name, w in orig.state_dict().items():
        if name in f:
            disk = to_disk[name]
            exp, _ = smfa_core.sculpt_tensor(f[name], a[name], 1.0, backend="reference")
            mism = (delta[disk] != exp).float().mean().item()
            assert mism < 1e-3, (name, mism)  # only matmul rounding at the mask boundary may differ
            torch.testing.assert_close(delta[disk], exp, atol=1e-6, rtol=1e-5)
            assert torch.equal(live[name], w + delta[disk])  # fp32 base: one fp32 add
            changed += 1
        else:
            assert torch.equal(live[name], w), name
    assert changed == len(f)
