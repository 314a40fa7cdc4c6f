"""The smfa method's options beyond the paper: per-tensor k (`k_rules`) and per-modality forget
deltas (`per_modality`, `k_image`, `k_text`)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from smfa_methods.api import unlearn
from smfa_methods.errors import MethodError
from smfa_methods.method import TrainConfig


def _state(path):
    return load_file(str(path / "model.safetensors"))


def test_smfa_k_rules_match_the_cli_engine(tiny_model, text_data, tmp_path):
    import smfa_core

    base = tiny_model("llama")
    rules = [r".*self_attn\..*=0", r".*layers\.1\..*=4"]
    res = unlearn("smfa", model=base, forget=text_data[0], retain=text_data[1], out=tmp_path / "run",
                  train=TrainConfig(mode="full", lr=5e-3, max_steps=2, batch_size=4),
                  options={"k": 0.5, "k_rules": rules})
    rep = smfa_core.sculpt(str(res.deltas["forget"]), str(res.deltas["anchor"]), k=0.5, k_rules=rules,
                           base=str(base), out=str(tmp_path / "cli"), emit="merged")
    ks = {t["name"]: t["k"] for t in rep.tensors}
    assert {n: k for n, k in ks.items() if "self_attn" in n} and all(
        k == 0.0 for n, k in ks.items() if "self_attn" in n)
    assert all(k == 4.0 for n, k in ks.items() if "layers.1.mlp" in n)
    assert all(k == 0.5 for n, k in ks.items() if "layers.0.mlp" in n)
    got, want = _state(res.model), _state(tmp_path / "cli")
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_smfa_bad_options_fail_before_training(tiny_model, text_data, vlm_data, tmp_path):
    base = tiny_model("llama")
    with pytest.raises(MethodError, match="k_rules.*expected REGEX=K"):
        unlearn("smfa", model=base, forget=text_data[0], retain=text_data[1], out=tmp_path / "a",
                options={"k_rules": ["nope"]})
    with pytest.raises(MethodError, match="no text-memory items"):  # every forget item of vlm_data has an image
        unlearn("smfa", model=tiny_model("qwen2_5_vl"), forget=vlm_data[0], retain=vlm_data[1], out=tmp_path / "b",
                options={"per_modality": True})
    assert not (tmp_path / "a" / "checkpoints").exists() and not (tmp_path / "b" / "checkpoints").exists()


def test_per_modality_sums_two_sculpted_deltas(tiny_model, vlm_data, tmp_path):
    """θ = θ_o + sculpt(ΔW_f^img; k_image) + sculpt(ΔW_f^txt; k_text), checked with the tensor API."""
    import json

    import smfa_core

    rows = [json.loads(line) for line in vlm_data[0].read_text().splitlines()]
    for r in rows[2:]:
        r.pop("image")  # two image-memory and two text-memory items
    forget = tmp_path / "forget.jsonl"
    forget.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "img").symlink_to(vlm_data[0].parent / "img")
    base = tiny_model("qwen2_5_vl")
    res = unlearn("smfa", model=base, forget=forget, retain=vlm_data[1], out=tmp_path / "run",
                  train=TrainConfig(mode="full", lr=5e-3, max_steps=2, batch_size=4),
                  options={"per_modality": True, "k_image": 0.25, "k_text": 3.0})
    assert {"forget_image", "forget_text", "anchor"} <= set(res.deltas)
    assert res.metrics["sculpt"]["image"]["k"] == 0.25 and res.metrics["sculpt"]["text"]["k"] == 3.0
    a = load_file(str(res.deltas["anchor"] / "delta.safetensors"))
    fi = load_file(str(res.deltas["forget_image"] / "delta.safetensors"))
    ft = load_file(str(res.deltas["forget_text"] / "delta.safetensors"))
    b, got = _state(base), _state(res.model)
    masked = 0
    for n in a:
        si, st_i = smfa_core.sculpt_tensor(fi[n], a[n], 0.25)
        st, st_t = smfa_core.sculpt_tensor(ft[n], a[n], 3.0)
        masked += st_i.masked + st_t.masked
        torch.testing.assert_close(got[n], b[n] + (si + st), rtol=0, atol=1e-6)
        assert not torch.equal(fi[n], ft[n])  # two deltas, trained on different items
    assert masked > 0
    for n in set(b) - set(a):
        assert torch.equal(got[n], b[n]), n
