"""sculpt_model_: in place on a loaded module, from tensors, PEFT adapters on the model, or paths."""

from __future__ import annotations

import pytest
import torch
from tiny_models import build_model

import smfa_core
from smfa_core.errors import SmfaError


def test_tensor_deltas_bit_exact():
    model = build_model("llama").to(torch.bfloat16)
    names = ["model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight"]
    g = torch.Generator().manual_seed(0)
    params = dict(model.named_parameters())
    f = {n: torch.randn(params[n].shape, generator=g) * 0.01 for n in names}
    a = {n: torch.where(torch.rand(params[n].shape, generator=g) < 0.3, -f[n], torch.randn(params[n].shape, generator=g) * 0.01)
         for n in names}
    before = {n: p.detach().clone() for n, p in params.items()}
    rep = smfa_core.sculpt_model_(model, f, a, 1.0, chunk_mb=0.01)
    after = dict(model.named_parameters())
    for n in before:
        if n in f:
            exp, st = smfa_core.sculpt_tensor(f[n], a[n], 1.0, base=before[n], backend="reference")
            assert torch.equal(after[n].view(torch.int16), exp.view(torch.int16)), n
            row = next(r for r in rep.tensors if r["name"] == n)
            assert (row["masked"], row["conflict"], row["rho"]) == (st.masked, st.conflict, st.rho)
        else:
            assert torch.equal(after[n], before[n])


def test_peft_adapters_on_the_model():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = build_model("llama")
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"], init_lora_weights=False)
    pm = get_peft_model(model, cfg, adapter_name="forget")
    pm.add_adapter("anchor", LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "down_proj"], init_lora_weights=False))
    expected = {}
    for name, mod in pm.named_modules():
        if hasattr(mod, "get_delta_weight") and "forget" in getattr(mod, "lora_A", {}):
            w = mod.base_layer.weight.detach().clone()
            exp, _ = smfa_core.sculpt_tensor(mod.get_delta_weight("forget").detach(),
                                             mod.get_delta_weight("anchor").detach(), 0.7, base=w, backend="reference")
            expected[name + ".base_layer.weight"] = exp
    rep = smfa_core.sculpt_model_(pm, "forget", "anchor", 0.7)
    assert {r["name"] for r in rep.tensors} == set(expected)
    params = dict(pm.named_parameters())
    for n, exp in expected.items():
        torch.testing.assert_close(params[n], exp, rtol=1e-5, atol=1e-6)
    assert rep.totals()["masked"] > 0


def test_errors():
    model = build_model("llama")
    with pytest.raises(SmfaError, match="not a parameter"):
        smfa_core.sculpt_model_(model, {"nope.weight": torch.zeros(3)}, {}, 1.0)
    with pytest.raises(SmfaError, match="no LoRA adapter named 'forget'"):
        smfa_core.sculpt_model_(model, "forget", "anchor", 1.0)
    n = "model.layers.0.mlp.up_proj.weight"
    shape = dict(model.named_parameters())[n].shape
    with pytest.raises(SmfaError, match="missing from the anchor"):
        smfa_core.sculpt_model_(model, {n: torch.ones(shape)}, {}, 1.0)
    with pytest.raises(SmfaError, match="shape"):
        smfa_core.sculpt_model_(model, {n: torch.ones(3, 3)}, {}, 1.0)


@pytest.mark.parametrize("kw,msg", [
    ({"eps": -1.0}, "--eps must be"), ({"eps": float("nan")}, "--eps must be"),
    ({"rho_scope": "layer"}, "--rho-scope must be"), ({"missing_anchor": "kep"}, "--missing-anchor must be"),
])
def test_shared_options_are_checked_by_every_entry_point(tmp_path, kw, msg):
    """sculpt, inspect and sculpt_model_ check eps / rho_scope / missing_anchor alike, before any work."""
    from safetensors.torch import save_file

    f = tmp_path / "f.safetensors"
    save_file({"w": torch.ones(4, 4)}, f)
    with pytest.raises(SmfaError, match=msg):
        smfa_core.sculpt(str(f), str(f), out=str(tmp_path / "o"), **kw)
    with pytest.raises(SmfaError, match=msg):
        smfa_core.inspect(str(f), str(f), **kw)
    with pytest.raises(SmfaError, match=msg):
        smfa_core.sculpt_model_(build_model("llama"), {}, {}, 1.0, **kw)
    assert not (tmp_path / "o").exists()


def test_adapters_on_the_model_expand_like_their_saved_files(tmp_path):
    """sculpt_model_ with adapter names and with the same adapters saved as PEFT dirs: one LoRA
    expansion (sources.lora_tiling), so the merged weights are the same bits."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    # scalings 1.5 and 2.5: not powers of two, so a product rounded differently would show
    pm = get_peft_model(build_model("llama"), LoraConfig(r=4, lora_alpha=6, target_modules=["q_proj", "down_proj"],
                                                         init_lora_weights=False), adapter_name="forget")
    pm.add_adapter("anchor", LoraConfig(r=2, lora_alpha=5, target_modules=["q_proj", "down_proj"],
                                        init_lora_weights=False))
    pm.save_pretrained(str(tmp_path / "ad"), selected_adapters=["forget", "anchor"])  # ad/forget, ad/anchor
    import copy

    twin = copy.deepcopy(pm)
    smfa_core.sculpt_model_(pm, "forget", "anchor", 0.7, chunk_mb=0.01)
    smfa_core.sculpt_model_(twin, str(tmp_path / "ad" / "forget"), str(tmp_path / "ad" / "anchor"), 0.7, chunk_mb=0.01)
    got, want = dict(pm.named_parameters()), dict(twin.named_parameters())
    assert any(".base_layer." in n for n in got)
    for n in got:
        assert torch.equal(got[n], want[n]), n
