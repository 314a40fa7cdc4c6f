"""MANU: statistics in every MLP layer of both modalities; exactly the selected neurons are
zeroed and nothing else changes."""

from __future__ import annotations

import json

import torch

from smfa_methods.api import unlearn
from smfa_methods.data import load_jsonl
from smfa_methods.method import TrainConfig
from smfa_methods.methods.manu import manu_prune, mlp_layers, select_neurons
from smfa_methods.models import load_model


def test_manu_zeroes_exactly_selected(tiny_model, vlm_data):
    loaded = load_model(tiny_model("qwen2_5_vl"))
    model = loaded.model
    layers = mlp_layers(model)
    assert {layer.modality for layer in layers} == {"language", "vision"}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    chosen = manu_prune(model, loaded.processor, load_jsonl(vlm_data[0]), load_jsonl(vlm_data[1]), prune_pct=10.0)
    assert {layer.modality for layer in layers if layer.name in chosen} == {"language", "vision"}
    # top 10 % per modality, counted over all neurons of that modality
    for mod in ("language", "vision"):
        total = sum(layer.down.in_features for layer in layers if layer.modality == mod)
        assert sum(len(v) for k, v in chosen.items() if any(la.name == k and la.modality == mod for la in layers)) == round(total * 0.1)
    expected = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in before.items()}
    for layer in layers:
        idx = chosen.get(layer.name, [])
        prefix = layer.name + "."
        for name in expected:
            if not name.startswith(prefix):
                continue
            sub = name[len(prefix):]
            if sub.split(".")[0] in ("gate_proj", "up_proj", "fc1"):
                expected[name][idx] = True  # rows (and bias entries)
            elif sub.split(".")[0] in ("down_proj", "fc2") and sub.endswith("weight"):
                expected[name][:, idx] = True  # columns
    after = dict(model.named_parameters())
    for name, mask in expected.items():
        assert torch.all(after[name][mask] == 0), name
        assert torch.equal(after[name][~mask], before[name][~mask]), name


def test_select_per_layer_scope():
    scores = {"a": torch.tensor([1.0, 5.0, 3.0, 0.0]), "b": torch.tensor([9.0, 8.0, 7.0, 6.0])}
    mods = {"a": "language", "b": "language"}
    assert select_neurons(scores, mods, 25.0, "modality") == {"b": [0, 1]}
    assert select_neurons(scores, mods, 25.0, "layer") == {"a": [1], "b": [0]}


def test_manu_method_run(tiny_model, vlm_data, tmp_path):
    res = unlearn("manu", model=tiny_model("llava_onevision"), forget=vlm_data[0], retain=vlm_data[1],
                  out=tmp_path, train=TrainConfig(batch_size=4), options={"prune_pct": 5.0})
    pruned = json.loads((tmp_path / "manu_pruned.json").read_text())
    assert pruned and res.metrics["pruned_neurons"] == sum(map(len, pruned.values()))
    model = load_model(res.model).model
    lay = {la.name: la for la in mlp_layers(model)}
    for name, idx in pruned.items():
        assert torch.all(lay[name].down.weight[:, idx] == 0)


def test_manu_statistics_respect_max_length(tiny_model, text_data):
    loaded = load_model(tiny_model("llama"))
    model = loaded.model
    seen = []
    emb = model.get_input_embeddings()
    handle = emb.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    try:
        manu_prune(model, loaded.processor, load_jsonl(text_data[0]), load_jsonl(text_data[1]), prune_pct=5.0,
                   max_length=6)
    finally:
        handle.remove()
    assert seen and max(seen) <= 6
