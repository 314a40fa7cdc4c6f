"""Tiny random transformers models for tests (weights only: no tokenizer or processor).

The configs are smfa_methods.testing.tiny's (`tiny_config`), plus GPT-2 for Conv1D layers.
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

# Token ids the VLM configs need; weights-only models never tokenize, so any ids < 96 do.
_VOCAB, _IDS = 96, dict(image_id=95, video_id=94, vision_start_id=93)


def _config(kind: str):
    import transformers as tf

    from smfa_methods.tiny import tiny_config

    if kind == "gpt2":
        return tf.GPT2Config(vocab_size=_VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    if kind in KINDS:
        return tiny_config(kind, vocab_size=_VOCAB, **_IDS)
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
