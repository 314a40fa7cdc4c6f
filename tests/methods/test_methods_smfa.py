"""SMFA: the method's final model equals `smfa sculpt` on its exported deltas; `mfa` is the
unsculpted MFA."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from smfa_methods.api import unlearn
from smfa_methods.method import TrainConfig
from smfa_methods.models import load_model


def _state(path):
    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_smfa_equals_sculpt_of_its_deltas(mode, tiny_model, vlm_data, tmp_path):
    base = tiny_model("qwen2_5_vl")
    cfg = TrainConfig(mode=mode, lr=5e-3, max_steps=3, batch_size=2)
    res = unlearn("smfa", model=base, forget=vlm_data[0], retain=vlm_data[1], out=tmp_path / "run", train=cfg,
                  options={"k": 0.5})
    assert set(res.deltas) == {"forget", "anchor"}
    got = _state(res.model)
    import smfa_core

    # The CLI's engine on the exported deltas: the same bits.
    rep = smfa_core.sculpt(str(res.deltas["forget"]), str(res.deltas["anchor"]), k=0.5, base=str(base),
                           out=str(tmp_path / "resculpt"), emit="merged")
    assert rep.totals()["masked"] > 0  # the anchor did veto part of the MFA
    want = _state(tmp_path / "resculpt")
    assert set(got) == set(want)
    for k in got:
        assert torch.equal(got[k], want[k]), k
    # Independent recomputation: the in-memory path on the loaded base model.
    loaded = load_model(base)
    smfa_core.sculpt_model_(loaded.model, str(res.deltas["forget"]), str(res.deltas["anchor"]), 0.5)
    loaded.model.save_pretrained(tmp_path / "check")
    want = _state(tmp_path / "check")
    for k in got:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6)


def test_mfa_is_unsculpted(tiny_model, text_data, tmp_path):
    base = tiny_model("llama")
    cfg = TrainConfig(mode="full", lr=5e-3, max_steps=2, batch_size=4)
    res = unlearn("mfa", model=base, forget=text_data[0], retain=text_data[1], out=tmp_path, train=cfg)
    got, b = _state(res.model), _state(base)
    delta = load_file(str(res.deltas["forget"] / "delta.safetensors"))
    for k, d in delta.items():
        torch.testing.assert_close(b[k] + d, got[k], rtol=0, atol=1e-6)
