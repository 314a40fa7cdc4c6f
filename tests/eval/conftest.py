"""Fixtures for the benchmark tests: a small built benchmark and a tiny random Llama with an
offline-trained byte-level BPE tokenizer and a chat template (no hub access)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory):
    from smfa_eval.build import build

    out = tmp_path_factory.mktemp("bench") / "b"
    build(out, profiles=20, seed=3, general_images=6)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, bench_dir):
    """Directory of a random 2-layer Llama + a tokenizer trained on the benchmark's text (the
    tiny models' tokenizer, smfa_methods.testing.tiny), saved like any local checkpoint."""
    import json

    import torch
    import transformers as tf

    from smfa_methods.testing.tiny import build_tokenizer

    corpus = []
    for name in ("eval.jsonl", "finetune.jsonl"):
        for line in (bench_dir / name).read_text().splitlines():
            d = json.loads(line)
            corpus += [d["question"], d["answer"]]
    tok = build_tokenizer(512, corpus)
    cfg = tf.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
                         tie_word_embeddings=False)
    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(cfg).eval()
    path = tmp_path_factory.mktemp("models") / "tiny-llama"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


class EchoGenerator:
    """Deterministic stand-in for a model: answers with the question's last words; can be
    told to crash after some batches (an interrupted run)."""

    def __init__(self, crash_after: int | None = None) -> None:
        self.calls = 0
        self.seen: list[str] = []
        self.crash_after = crash_after

    def generate(self, prompts):
        if self.crash_after is not None and self.calls >= self.crash_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        self.seen += [p.id for p in prompts]
        return [f"This is {p.text.rstrip('?').split()[-1]}." for p in prompts]


@pytest.fixture
def echo_generator():
    return EchoGenerator


@pytest.fixture(scope="session")
def small_bench(tmp_path_factory):
    """A 4-profile benchmark with small images: enough items of every task for the VLM tests."""
    from smfa_eval.build import build

    out = tmp_path_factory.mktemp("small-bench") / "b"
    build(out, profiles=4, seed=1, general_images=0, image_size=48)
    return out


_TINY: dict = {}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """tiny_checkpoint(kind) -> dir of a saved `smfa_methods.tiny` model (llama,
    llava_onevision, qwen2_5_vl), built once per session and loaded like any checkpoint."""
    from smfa_methods.tiny import make_tiny

    def get(kind: str):
        if kind not in _TINY:
            _TINY[kind] = make_tiny(kind, tmp_path_factory.mktemp(f"tiny-{kind}"))
        return _TINY[kind]

    return get
