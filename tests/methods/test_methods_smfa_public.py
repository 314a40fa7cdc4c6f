"""The smfa method's `variant = "public"` (the public re-implementation's SMFA: three adapters in one
run, each forget view sculpted with its own k, then averaged) and that the default stays the
paper's SMFA."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from smfa_methods.api import unlearn
from smfa_methods.errors import MethodError
from smfa_methods.method import TrainConfig


def _state(path):
    return load_file(str(path / "model.safetensors"))


def _delta(path):
    return load_file(str(path / "delta.safetensors"))


@pytest.fixture()
def all_images(vlm_data, tmp_path):
    """(forget, retain) files where every retain item also shows an image, so the text-only
    view of the retain batch differs from the batch itself."""
    rows = [json.loads(line) for line in vlm_data[1].read_text().splitlines()]
    for i, r in enumerate(rows):
        r["image"] = f"img/p{i}.png"
    (tmp_path / "img").symlink_to(vlm_data[0].parent / "img")
    retain = tmp_path / "retain.jsonl"
    retain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    forget = tmp_path / "forget.jsonl"
    forget.write_text(vlm_data[0].read_text())
    return forget, retain


def test_public_merges_the_mean_of_two_views_each_sculpted(tiny_model, vlm_data, tmp_path):
    """θ = θ_o + ½[sculpt(ΔW_f^multi, ΔW_a; k_image) + sculpt(ΔW_f^text, ΔW_a; k_text)] (mask, then mean),
    checked against the tensor API, and not the other order."""
    import smfa_core

    base = tiny_model("qwen2_5_vl")
    res = unlearn("smfa", model=base, forget=vlm_data[0], retain=vlm_data[1], out=tmp_path / "run",
                  train=TrainConfig(mode="full", lr=5e-3, max_steps=2, batch_size=4),
                  options={"variant": "public", "k_image": 0.25, "k_text": 3.0})
    assert {"forget_multi", "forget_text", "anchor", "sculpted"} <= set(res.deltas)
    assert res.metrics["sculpt"]["multi"]["k"] == 0.25 and res.metrics["sculpt"]["text"]["k"] == 3.0
    assert res.metrics["joint"]["global_step"] == 2  # one run trained all three
    assert not (tmp_path / "run" / "checkpoints" / "anchor").exists()
    a, fm, ft = (_delta(res.deltas[b]) for b in ("anchor", "forget_multi", "forget_text"))
    b, got = _state(base), _state(res.model)
    masked, other_order_differs = 0, False
    for n in a:
        sm, st_m = smfa_core.sculpt_tensor(fm[n], a[n], 0.25)
        stx, st_t = smfa_core.sculpt_tensor(ft[n], a[n], 3.0)
        masked += st_m.masked + st_t.masked
        torch.testing.assert_close(got[n], b[n] + 0.5 * (sm + stx), rtol=0, atol=1e-6)
        assert not torch.equal(fm[n], ft[n])  # two views of the same items: two deltas
        mean_first, _ = smfa_core.sculpt_tensor(0.5 * (fm[n] + ft[n]), a[n], 0.25)
        other_order_differs |= not torch.allclose(b[n] + mean_first, got[n], atol=1e-6)
    assert masked > 0 and other_order_differs
    for n in set(b) - set(a):
        assert torch.equal(got[n], b[n]), n


def _one_step_expectation(base, forget, retain, lr: float, max_norm: float = 1.0) -> dict[str, dict]:
    """The deltas one joint AdamW step must give, computed here from the losses of each
    branch (its gradient, the one clip coefficient over all three, Adam's first step
    Δ = -lr·ĝ/(|ĝ|+ε)), on a fresh copy of the model per branch."""
    from dataclasses import replace

    from smfa_methods import models
    from smfa_methods.collators import SFTCollator
    from smfa_methods.data import PairedDataset, load_jsonl
    from smfa_methods.methods.idk import with_refusals

    idk = with_refusals(load_jsonl(forget), 0)
    r = load_jsonl(retain)
    partners = [r[j] for j in PairedDataset(idk, r, seed=0).partner]
    def text(exs):
        return [replace(e, image=None) for e in exs]
    data = {"forget_multi": (idk, partners), "forget_text": (text(idk), text(partners)),
            "anchor": (partners, text(partners)),
            "anchor_alone": (partners,)}  # what an anchor of the retain batch alone would be (not in the step)
    grads = {}
    for branch, batches in data.items():
        loaded = models.load_model(base)
        m = models.prepare_for_training(loaded.model, "full")
        col = SFTCollator(loaded.processor)
        loss = sum(m(**col.encode_batch(exs)).loss for exs in batches) / 6  # the step's loss is the mean of six
        loss.backward()
        live = {n: p.grad.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
        grads[branch] = models.to_disk_names(m, live)
    total = torch.sqrt(sum((g.double() ** 2).sum() for b, gs in grads.items() if b != "anchor_alone"
                           for g in gs.values()))
    clip = min(1.0, max_norm / (float(total) + 1e-6))
    return {b: {n: -lr * (clip * g) / ((clip * g).abs() + 1e-8) for n, g in gs.items()} for b, gs in grads.items()}


def test_public_trains_the_anchor_jointly_on_both_views_of_the_retain_data(tiny_model, all_images, tmp_path):
    """One step on every forget item: each branch moved as its own two losses say, under the one
    clip of the joint step; the anchor on the retain batch and its text view, nothing else."""
    base = tiny_model("qwen2_5_vl")
    forget, retain = all_images
    lr = 1e-3
    res = unlearn("smfa", model=base, forget=forget, retain=retain, out=tmp_path / "run",
                  train=TrainConfig(mode="full", lr=lr, max_steps=1, batch_size=4), options={"variant": "public"})
    want = _one_step_expectation(base, forget, retain, lr)
    alone = want.pop("anchor_alone")
    got = {b: _delta(res.deltas[b]) for b in want}
    for b in want:
        assert set(got[b]) == set(want[b])
        for n in want[b]:
            torch.testing.assert_close(got[b][n], want[b][n], rtol=0, atol=2e-2 * lr, msg=f"{b} {n}")
    # the check tells the data apart: the retain batch without its text view, or the forget
    # data, would have moved the anchor elsewhere
    for other in (alone, want["forget_multi"], want["forget_text"]):
        assert any(not torch.allclose(got["anchor"][n], other[n], rtol=0, atol=2e-2 * lr) for n in other)


def test_public_with_lora_merges_the_mean_of_the_sculpted_adapters(tiny_model, vlm_data, tmp_path):
    """LoRA: three PEFT adapters from one run; the model is θ_o + ½ Σ sculpt(scale·B·A, anchor's)."""
    from peft import PeftModel

    import smfa_core
    from smfa_methods import models

    base = tiny_model("qwen2_5_vl")
    res = unlearn("smfa", model=base, forget=vlm_data[0], retain=vlm_data[1], out=tmp_path / "run",
                  train=TrainConfig(mode="lora", lr=5e-2, max_steps=2, batch_size=4),
                  options={"variant": "public", "k_image": 0.5, "k_text": 2.0})
    dirs = {b: res.deltas[b] for b in ("forget_multi", "forget_text", "anchor")}
    assert all((d / "adapter_config.json").is_file() for d in dirs.values())
    assert not (tmp_path / "run" / "README.md").exists()
    loaded = models.load_model(base)
    peft = PeftModel.from_pretrained(loaded.model, str(dirs["anchor"]), adapter_name="anchor")
    for b in ("forget_multi", "forget_text"):
        peft.load_adapter(str(dirs[b]), adapter_name=b)
    dense = {b: {} for b in dirs}
    for name, mod in peft.base_model.model.named_modules():
        if hasattr(mod, "get_delta_weight") and "anchor" in getattr(mod, "lora_A", {}):
            for b in dirs:
                dense[b][f"{name}.weight"] = mod.get_delta_weight(b).detach()
    fresh = models.load_model(base).model
    dense = {b: models.to_disk_names(fresh, d) for b, d in dense.items()}
    b0, got = _state(base), _state(res.model)
    assert dense["anchor"]
    for n, a in dense["anchor"].items():
        sm, _ = smfa_core.sculpt_tensor(dense["forget_multi"][n], a, 0.5)
        stx, _ = smfa_core.sculpt_tensor(dense["forget_text"][n], a, 2.0)
        torch.testing.assert_close(got[n], b0[n] + 0.5 * (sm + stx), rtol=0, atol=1e-6)
        assert not torch.equal(dense["forget_multi"][n], dense["forget_text"][n])


def test_default_variant_is_the_paper_smfa_unchanged(tiny_model, vlm_data, tmp_path):
    """No option and variant=paper: the same bytes of the model, the same deltas, nothing of the
    public variant's."""
    base = tiny_model("qwen2_5_vl")
    runs = {}
    for tag, opts in (("default", {"k": 2.0}), ("paper", {"k": 2.0, "variant": "paper"})):
        runs[tag] = unlearn("smfa", model=base, forget=vlm_data[0], retain=vlm_data[1], out=tmp_path / tag,
                            train=TrainConfig(mode="full", lr=5e-3, max_steps=2, batch_size=4), options=opts)
    d, p = runs["default"], runs["paper"]
    assert set(d.deltas) == set(p.deltas) == {"forget", "anchor"}
    assert (d.model / "model.safetensors").read_bytes() == (p.model / "model.safetensors").read_bytes()
    for k in d.deltas:
        a, b = _delta(d.deltas[k]), _delta(p.deltas[k])
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
        # the files differ at most in the order safetensors writes the metadata keys (random per write)
        with safe_open(str(d.deltas[k] / "delta.safetensors"), "pt") as x, \
                safe_open(str(p.deltas[k] / "delta.safetensors"), "pt") as y:
            assert x.metadata() == y.metadata()
    assert not (tmp_path / "default" / "forget_multi").exists()
    assert (tmp_path / "default" / "checkpoints" / "anchor").is_dir()  # the paper's anchor: its own run


def test_bad_variant_options_fail_before_training(tiny_model, vlm_data, tmp_path, monkeypatch):
    base = tiny_model("qwen2_5_vl")
    with monkeypatch.context() as m:
        m.setenv("WORLD_SIZE", "2")  # six forwards before one backward bypass DDP: refused, not silently wrong
        with pytest.raises(MethodError, match="one process"):
            unlearn("smfa", model=base, forget=vlm_data[0], retain=vlm_data[1], out=tmp_path / "c",
                    options={"variant": "public"})
    with pytest.raises(MethodError, match="'variant'.*paper, public.*'nope'"):
        unlearn("smfa", model=base, forget=vlm_data[0], retain=vlm_data[1], out=tmp_path / "a",
                options={"variant": "nope"})
    with pytest.raises(MethodError, match="does not combine with per_modality"):
        unlearn("smfa", model=base, forget=vlm_data[0], retain=vlm_data[1], out=tmp_path / "b",
                options={"variant": "public", "per_modality": True})
    assert not any((tmp_path / d / "checkpoints").exists() for d in "abc")
