"""`smfa sculpt --emit adapter`: a compact masked adapter (the forget LoRA adapter's files +
one bit per delta element), read back as a delta source that merges to the same bits as
`--emit merged`, on real PEFT adapters of a tiny Llama."""

from __future__ import annotations

import filecmp
import json
import os

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tiny_models import build_model, saved_model

import smfa_core
from smfa_cli.main import cli
from smfa_core.errors import SmfaError
from smfa_core.sources import MASK_FILE, MASKED_WEIGHTS, MaskedAdapterSource, detect_kind, open_source

peft = pytest.importorskip("peft")

TARGETS = ["q_proj", "v_proj", "down_proj"]


def _adapter(base_dir, out, seed, modules_to_save=None):
    model = build_model("llama").__class__.from_pretrained(base_dir, dtype=torch.float32)
    torch.manual_seed(seed)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False,
                          modules_to_save=modules_to_save)
    pm = peft.get_peft_model(model, cfg)
    if modules_to_save:  # a saved copy that differs from the base
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "modules_to_save" in n:
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)) * 0.01)
    pm.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("masked")
    base = saved_model(tmp_path_factory, "llama")
    return {
        "base": str(base),
        "f": _adapter(base, d / "f", 1, modules_to_save=["lm_head"]),
        "a": _adapter(base, d / "a", 2, modules_to_save=["lm_head"]),
        "f_lora": _adapter(base, d / "f_lora", 3),
        "a_lora": _adapter(base, d / "a_lora", 4),
    }


def _tensors(path: str) -> dict[str, torch.Tensor]:
    out = {}
    for fn in sorted(os.listdir(path)):
        if fn.endswith(".safetensors"):
            out.update(load_file(os.path.join(path, fn)))
    return out


def _assert_same_bits(got: dict, exp: dict) -> None:
    assert got.keys() == exp.keys()
    for n in exp:
        assert got[n].dtype == exp[n].dtype and got[n].shape == exp[n].shape, n
        assert torch.equal(got[n].view(torch.uint8), exp[n].view(torch.uint8)), n


def test_adapter_merges_to_the_bits_of_emit_merged(setup, tmp_path):
    s = setup
    rep = smfa_core.sculpt(s["f"], s["a"], k=0.5, base=s["base"], out=str(tmp_path / "merged"), emit="merged")
    tot = rep.totals()
    assert 0 < tot["masked"] < tot["numel"]
    ad = tmp_path / "adapter"
    smfa_core.sculpt(s["f"], s["a"], k=0.5, base=s["base"], out=str(ad), emit=["adapter", "mask"])
    # the adapter's own files, byte for byte, plus the masks (the same as --emit mask's)
    assert filecmp.cmp(os.path.join(s["f"], "adapter_config.json"), ad / "adapter_config.json", shallow=False)
    assert filecmp.cmp(os.path.join(s["f"], "adapter_model.safetensors"), ad / MASKED_WEIGHTS, shallow=False)
    assert not (ad / "adapter_model.safetensors").exists()
    assert "smfa merge" in (ad / "README.md").read_text()
    _assert_same_bits(load_file(ad / MASK_FILE), load_file(ad / "mask.safetensors"))
    with safe_open(str(ad / MASK_FILE), "pt") as fh:
        meta = json.loads(fh.metadata()["smfa.masked_adapter"])
    assert meta["k"] == 0.5 and meta["mode"] == "both" and meta["forget"] == s["f"]
    assert detect_kind(str(ad)) == "masked-adapter"
    assert detect_kind(s["f"]) == "lora"
    # a bit per element: far smaller than the dense delta it stands for
    numel = sum(t["numel"] for t in rep.tensors)
    assert os.path.getsize(ad / MASK_FILE) < numel // 8 + 4096

    mrep = smfa_core.merge(s["base"], str(ad), out=str(tmp_path / "merged2"))
    assert mrep.sources["forget"]["kind"] == "masked-adapter"
    _assert_same_bits(_tensors(str(tmp_path / "merged2")), _tensors(str(tmp_path / "merged")))


def test_adapter_delta_is_the_sculpted_delta(setup, tmp_path):
    s = setup
    smfa_core.sculpt(s["f_lora"], s["a_lora"], k=1.0, out=str(tmp_path / "d"), emit="delta")
    smfa_core.sculpt(s["f_lora"], s["a_lora"], k=1.0, out=str(tmp_path / "ad"), emit="adapter")
    with open_source(str(tmp_path / "ad")) as src:
        assert isinstance(src, MaskedAdapterSource)
        exp = load_file(tmp_path / "d" / "delta.safetensors")
        got = {}
        for n in src.names():
            x, xb = src.read(n, 0, src.numel(n))
            assert xb is None and x.dtype == torch.float32
            got[n] = x.clone().view(src.shape(n))
            # any chunking gives the same values (masks are read by byte, bits sliced)
            m = src.numel(n)
            parts = [src.read(n, a, min(a + 13, m))[0].clone() for a in range(0, m, 13)]
            assert torch.equal(torch.cat(parts), got[n].reshape(-1)), n
    _assert_same_bits(got, exp)
    assert any(bool((v == 0).any()) for v in got.values())


def test_adapter_applies_in_memory(setup, tmp_path):
    s = setup
    smfa_core.sculpt(s["f_lora"], s["a_lora"], k=1.0, base=s["base"], out=str(tmp_path / "m"), emit="merged")
    smfa_core.sculpt(s["f_lora"], s["a_lora"], k=1.0, out=str(tmp_path / "ad"), emit="adapter")
    model = build_model("llama").__class__.from_pretrained(s["base"], dtype=torch.float32)
    smfa_core.sculpt_model_(model, str(tmp_path / "ad"), {}, 1.0, missing_anchor="keep")
    merged = _tensors(str(tmp_path / "m"))
    for n, p in model.state_dict().items():
        assert torch.equal(p, merged[n]), n


def test_peft_refuses_a_masked_adapter(setup, tmp_path):
    """PEFT would apply the LoRA without its mask: the directory must not load as a plain adapter."""
    s = setup
    smfa_core.sculpt(s["f_lora"], s["a_lora"], k=1.0, out=str(tmp_path / "ad"), emit="adapter")
    model = build_model("llama").__class__.from_pretrained(s["base"], dtype=torch.float32)
    with pytest.raises(ValueError):  # it finds no adapter_model.* (and, offline, no hub repo)
        peft.PeftModel.from_pretrained(model, str(tmp_path / "ad"))
    assert detect_kind(str(tmp_path / "ad" / MASKED_WEIGHTS)) == "masked-adapter"


def test_emit_adapter_errors(setup, tmp_path):
    s = setup
    dense = tmp_path / "dense.safetensors"
    save_file({"model.layers.0.mlp.down_proj.weight": torch.zeros(32, 64)}, dense)
    with pytest.raises(SmfaError, match="--emit adapter needs a LoRA adapter as --forget.*delta source"):
        smfa_core.sculpt(str(dense), str(dense), out=str(tmp_path / "x"), emit="adapter")
    with pytest.raises(SmfaError, match="combine it with mask only"):
        smfa_core.sculpt(s["f"], s["a"], base=s["base"], out=str(tmp_path / "x"), emit=["adapter", "merged"])
    assert not os.path.exists(tmp_path / "x")


def test_damaged_masks_are_named(setup, tmp_path):
    s = setup
    ad = tmp_path / "ad"
    smfa_core.sculpt(s["f_lora"], s["a_lora"], k=1.0, out=str(ad), emit="adapter")
    masks = load_file(ad / MASK_FILE)
    name = sorted(masks)[0]
    bad = dict(masks)
    bad[name] = masks[name][:-1].clone()
    save_file(bad, ad / MASK_FILE)
    with pytest.raises(SmfaError, match=f"mask {name!r} is U8 .* expected U8"):
        open_source(str(ad))
    bad = {n: t for n, t in masks.items() if n != name}
    save_file(bad, ad / MASK_FILE)
    with pytest.raises(SmfaError, match=name.split(".")[-2]):
        open_source(str(ad))
    os.remove(ad / MASK_FILE)
    with pytest.raises(SmfaError, match="no smfa_mask.safetensors"):
        MaskedAdapterSource(str(ad))


def test_cli_emit_adapter_and_merge(setup, tmp_path):
    s = setup
    r = CliRunner().invoke(cli, ["sculpt", "-f", s["f"], "-a", s["a"], "--k", "0.5", "--base", s["base"],
                                 "-o", str(tmp_path / "ad"), "--emit", "adapter", "--no-progress"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["merge", "--base", s["base"], "-d", str(tmp_path / "ad"), "-o", str(tmp_path / "m"),
                                 "--json", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["sources"]["forget"]["kind"] == "masked-adapter"
    r = CliRunner().invoke(cli, ["sculpt", "-f", s["f"], "-a", s["a"], "--base", s["base"], "-o",
                                 str(tmp_path / "x"), "--emit", "adapter", "--emit", "merged"])
    assert r.exit_code != 0 and "combine it with mask only" in r.output and "Traceback" not in r.output
