"""Tiny random transformers models for tests (weights only: no tokenizer or processor).

Builders return fp32 models in eval mode, seeded so that two calls give identical weights.
`saved_model(tmp_path_factory, kind)` saves one with `save_pretrained` once per test session
and returns the directory; `load_model(kind, path)` loads it back with the matching class.

Kinds: "llama", "gpt2" (Conv1D layers, for LoRA `fan_in_fan_out`), "llava_onevision",
"qwen2_5_vl".
"""

from __future__ import annotations

from pathlib import Path

import torch

KINDS = ("llama", "gpt2", "llava_onevision", "qwen2_5_vl")

_LLAMA_TEXT = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    tie_word_embeddings=False,
)


def _config(kind: str):
    import transformers as tf

    if kind == "llama":
        return tf.LlamaConfig(**_LLAMA_TEXT)
    if kind == "gpt2":
        return tf.GPT2Config(vocab_size=96, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    if kind == "llava_onevision":
        vision = dict(
            model_type="siglip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        )
        text = dict(model_type="qwen2", **{k: v for k, v in _LLAMA_TEXT.items() if k != "tie_word_embeddings"})
        return tf.LlavaOnevisionConfig(
            vision_config=vision,
            text_config=text,
            image_token_index=95,
            video_token_index=94,
            vision_feature_layer=-1,
            image_grid_pinpoints=[[32, 32]],
            tie_word_embeddings=False,
        )
    if kind == "qwen2_5_vl":
        vision = dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=4,
            out_hidden_size=32,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[1],
        )
        text = dict(
            vocab_size=96,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,  # head_dim 16: mrope_section sums to 8
            num_key_value_heads=1,
            max_position_embeddings=64,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        )
        return tf.Qwen2_5_VLConfig(
            vision_config=vision,
            text_config=text,
            image_token_id=95,
            video_token_id=94,
            vision_start_token_id=93,
            tie_word_embeddings=False,
        )
    raise ValueError(f"unknown tiny model kind {kind!r}")


def model_class(kind: str):
    import transformers as tf

    return {
        "llama": tf.LlamaForCausalLM,
        "gpt2": tf.GPT2LMHeadModel,
        "llava_onevision": tf.LlavaOnevisionForConditionalGeneration,
        "qwen2_5_vl": tf.Qwen2_5_VLForConditionalGeneration,
    }[kind]


def build_model(kind: str, seed: int = 0):
    """A tiny random fp32 model; every parameter gets distinct random values (no zeros/ones)."""
    torch.manual_seed(seed)
    model = model_class(kind)(_config(kind)).to(torch.float32).eval()
    # Norm weights start at 1 and biases at 0: randomise so that names can be matched by value.
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def save_model(model, path: Path) -> Path:
    path = Path(path)
    model.save_pretrained(path)
    return path


def load_model(kind: str, path: Path):
    return model_class(kind).from_pretrained(path, dtype=torch.float32).eval()


_CACHE: dict[tuple[str, int], Path] = {}


def saved_model(tmp_path_factory, kind: str, seed: int = 0) -> Path:
    """Directory of a saved tiny model, built once per test session."""
    key = (kind, seed)
    if key not in _CACHE:
        path = tmp_path_factory.mktemp(f"tiny-{kind}-{seed}")
        save_model(build_model(kind, seed), path)
        _CACHE[key] = path
    return _CACHE[key]
