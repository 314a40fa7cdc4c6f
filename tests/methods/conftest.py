"""Shared fixtures for smfa_methods tests: tiny models saved once per session, small
forget/retain JSONL files with images (no third-party plugins: see tests/conftest.py)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


_MODELS: dict = {}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """tiny_model(kind) -> dir of a saved tiny checkpoint (built once per session)."""
    from smfa_methods.tiny import make_tiny

    def get(kind: str):
        if kind not in _MODELS:
            _MODELS[kind] = make_tiny(kind, tmp_path_factory.mktemp(f"tiny-{kind}"))
        return _MODELS[kind]

    return get


def _write_data(root, with_images: bool):
    from PIL import Image

    from smfa_methods.data import write_jsonl

    root.mkdir(parents=True, exist_ok=True)
    if with_images:
        (root / "img").mkdir(exist_ok=True)
        for i in range(4):
            Image.new("RGB", (64, 64), (60 * i, 20 + 30 * i, 200 - 40 * i)).save(root / "img" / f"p{i}.png")
    names = ["Ada", "Bo", "Cy", "Di"]
    forget = [
        {"question": f"Where was {n} born?", "answer": f"{n} was born in Lviv {i}.",
         **({"image": f"img/p{i}.png"} if with_images else {}), "profile_id": i}
        for i, n in enumerate(names)
    ]
    retain = [
        {"question": f"What is the job of person {i}?", "answer": f"Person {i} works as a pilot.",
         **({"image": f"img/p{i}.png"} if with_images and i % 2 else {})}
        for i in range(4)
    ]
    return write_jsonl(root / "forget.jsonl", forget), write_jsonl(root / "retain.jsonl", retain)


@pytest.fixture(scope="session")
def vlm_data(tmp_path_factory):
    """(forget.jsonl, retain.jsonl) with images (forget: all; retain: half)."""
    return _write_data(tmp_path_factory.mktemp("vlm-data"), True)


@pytest.fixture(scope="session")
def text_data(tmp_path_factory):
    """(forget.jsonl, retain.jsonl), text only."""
    return _write_data(tmp_path_factory.mktemp("text-data"), False)


class FakeTrainer:
    """What compute_loss needs from the trainer, without a Trainer."""

    def __init__(self, method, ref_logits=None):
        self.method_options = method.resolve_options({})
        self.parts = {}
        self._ref = ref_logits

    def record(self, **parts):
        self.parts.update({k: float(v) for k, v in parts.items()})

    def reference_logits(self, model, inputs):
        return self._ref(inputs)


@pytest.fixture
def fake_trainer():
    return FakeTrainer
