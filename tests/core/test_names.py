"""smfa_core.names: tensor-name matching, unit cases and real transformers 5.x checkpoints."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from tiny_models import load_model, saved_model

from smfa_core.errors import SmfaError
from smfa_core.names import canonical_name, match_names


def test_identity_wins():
    src = ["model.layers.0.mlp.down_proj.weight", "lm_head.weight"]
    tgt = src + ["model.norm.weight"]
    assert match_names(src, tgt, source_label="s", target_label="t") == {n: n for n in src}


def test_peft_prefix_is_stripped():
    src = ["base_model.model.model.language_model.layers.0.mlp.down_proj.weight"]
    tgt = ["model.language_model.layers.0.mlp.down_proj.weight"]
    assert match_names(src, tgt, source_label="s", target_label="t") == {src[0]: tgt[0]}


LLAVA_PAIRS = [
    ("language_model.model.layers.0.self_attn.q_proj.weight", "model.language_model.layers.0.self_attn.q_proj.weight"),
    ("language_model.model.embed_tokens.weight", "model.language_model.embed_tokens.weight"),
    ("language_model.model.norm.weight", "model.language_model.norm.weight"),
    ("language_model.lm_head.weight", "lm_head.weight"),
    ("vision_tower.encoder.layers.0.mlp.fc1.weight", "model.vision_tower.encoder.layers.0.mlp.fc1.weight"),
    ("multi_modal_projector.linear_1.weight", "model.multi_modal_projector.linear_1.weight"),
    ("image_newline", "model.image_newline"),
]
QWEN_PAIRS = [
    ("model.layers.1.mlp.down_proj.weight", "model.language_model.layers.1.mlp.down_proj.weight"),
    ("model.embed_tokens.weight", "model.language_model.embed_tokens.weight"),
    ("model.norm.weight", "model.language_model.norm.weight"),
    ("lm_head.weight", "lm_head.weight"),
    ("visual.blocks.0.attn.qkv.weight", "model.visual.blocks.0.attn.qkv.weight"),
    ("visual.merger.mlp.0.weight", "model.visual.merger.mlp.0.weight"),
]


@pytest.mark.parametrize("pairs", [LLAVA_PAIRS, QWEN_PAIRS], ids=["llava", "qwen"])
def test_known_rewrites_both_directions(pairs):
    disk = [d for d, _ in pairs]
    live = [v for _, v in pairs]
    assert match_names(disk, live, source_label="s", target_label="t") == dict(pairs)
    assert match_names(live, disk, source_label="s", target_label="t") == {v: d for d, v in pairs}
    # adapter keys (live names under base_model.model.) onto on-disk names
    keys = ["base_model.model." + v for v in live]
    assert match_names(keys, disk, source_label="s", target_label="t") == {k: d for k, (d, _) in zip(keys, pairs)}


def test_transformers4_clip_vision_model_prefix():
    src = ["vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight"]
    tgt = ["model.vision_tower.encoder.layers.0.self_attn.q_proj.weight"]
    assert match_names(src, tgt, source_label="s", target_label="t") == {src[0]: tgt[0]}


def test_rewrite_is_accepted_only_if_in_target():
    # Llama: model.layers.* is both the disk and the live name; the Qwen rewrite must not invent names.
    names = ["model.layers.0.mlp.up_proj.weight", "model.norm.weight"]
    assert canonical_name(names[0]) == "model.language_model.layers.0.mlp.up_proj.weight"
    assert match_names(names, names, source_label="s", target_label="t") == {n: n for n in names}


def test_unambiguous_suffix():
    src = ["layers.0.mlp.down_proj.weight", "custom.blocks.3.attn.weight"]
    tgt = ["backbone.text.layers.0.mlp.down_proj.weight", "blocks.3.attn.weight", "other.weight"]
    got = match_names(src, tgt, source_label="s", target_label="t")
    assert got == {src[0]: tgt[0], src[1]: tgt[1]}


def test_ambiguous_suffix_is_an_error():
    src = ["layers.0.q_proj.weight"]
    tgt = ["text.layers.0.q_proj.weight", "vision.layers.0.q_proj.weight"]
    with pytest.raises(SmfaError, match=r"layers\.0\.q_proj\.weight.*several"):
        match_names(src, tgt, source_label="forget", target_label="base")


def test_unmatched_names_the_tensor_and_both_sides():
    src = ["model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.nope.weight"]
    tgt = ["model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.up_proj.weight"]
    with pytest.raises(SmfaError) as ei:
        match_names(src, tgt, source_label="forget (x.safetensors)", target_label="base (ckpt)")
    msg = str(ei.value)
    assert "model.layers.0.mlp.nope.weight" in msg and "forget (x.safetensors)" in msg and "base (ckpt)" in msg


def test_never_two_sources_onto_one_target():
    src = ["model.layers.0.mlp.up_proj.weight", "model.language_model.layers.0.mlp.up_proj.weight"]
    tgt = ["model.language_model.layers.0.mlp.up_proj.weight"]
    with pytest.raises(SmfaError, match="both map onto"):
        match_names(src, tgt, source_label="s", target_label="t")
    # ... and neither by suffix
    with pytest.raises(SmfaError, match="both map onto|several"):
        match_names(["a.x.weight", "b.x.weight"], ["x.weight"], source_label="s", target_label="t")


# --- real checkpoints saved by this transformers version -------------------------------------


def _disk_names(path):
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.mark.parametrize("kind", ["llama", "llava_onevision", "qwen2_5_vl"])
def test_saved_names_match_what_transformers_loads(tmp_path_factory, kind):
    """Disk -> live mapping equals the one transformers applies when it loads the checkpoint
    (established by value: every parameter of the tiny models is distinct random data)."""
    path = saved_model(tmp_path_factory, kind)
    disk = _disk_names(path)
    live = load_model(kind, path).state_dict()
    by_value = {}
    for d, t in disk.items():
        hits = [k for k, v in live.items() if v.shape == t.shape and torch.equal(v, t)]
        assert len(hits) == 1, (d, hits)
        by_value[d] = hits[0]
    assert match_names(list(disk), list(live), source_label="disk", target_label="live") == by_value
    back = match_names(list(live), list(disk), source_label="live", target_label="disk")
    assert back == {v: k for k, v in by_value.items()}
    if kind != "llama":  # the VLMs really are saved in the legacy layout
        assert set(disk) != set(live)
