"""JSONL schema errors, pairing, answer-only labels for text and image+text chat examples."""

from __future__ import annotations

import json

import pytest
import torch

from smfa_methods.collators import PairedCollator, SFTCollator
from smfa_methods.data import Example, PairedDataset, load_jsonl
from smfa_methods.errors import DataError
from smfa_methods.models import load_model
from smfa_methods.refusals import REFUSALS, is_refusal, sample_refusals


def test_schema_errors_name_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"question": "q", "answer": "a"}\n{"question": "q"}\n')
    with pytest.raises(DataError, match=rf"{p}:2: missing required key 'answer'"):
        load_jsonl(p)
    p.write_text('{"question": "q", "answer": "a"}\n\nnot json\n')
    with pytest.raises(DataError, match=rf"{p}:3: invalid JSON"):
        load_jsonl(p)
    p.write_text('{"question": 1, "answer": "a"}\n')
    with pytest.raises(DataError, match=r":1: 'question' must be a string"):
        load_jsonl(p)


def test_missing_image_names_path(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"question": "q", "answer": "a", "image": "nope/x.png"}) + "\n")
    with pytest.raises(DataError, match=r"image not found: .*nope/x.png"):
        load_jsonl(p)


def test_extra_keys_kept_and_image_resolved(vlm_data):
    ex = load_jsonl(vlm_data[0])[1]
    assert ex.extra == {"profile_id": 1}
    assert ex.image.is_absolute() and ex.image.name == "p1.png"


def test_benchmark_files_resolve_images_from_the_benchmark_root(tmp_path):
    """`smfa bench build` writes image paths relative to the benchmark directory, also in its
    unlearn/ split files: they load as they are (and plain files stay relative to themselves)."""
    from smfa_eval.build import build
    from smfa_eval.schema import Bench

    bench = tmp_path / "b"
    build(bench, profiles=20, seed=3, general_images=2)
    split = Bench(bench).split("forget10")
    for rel in (split.forget_file, split.retain_file):
        examples = load_jsonl(bench / rel)
        images = [e.image for e in examples if e.image is not None]
        assert images and all(p.is_file() and p.is_relative_to(bench.resolve()) for p in images), rel
    # a copy outside any benchmark dir: relative to the file itself, or to an explicit root
    lines = (bench / split.forget_file).read_text()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "f.jsonl").write_text(lines)
    with pytest.raises(DataError, match="image not found: .*mine/images/"):
        load_jsonl(tmp_path / "mine" / "f.jsonl")
    assert load_jsonl(tmp_path / "mine" / "f.jsonl", image_root=bench)[0].question


def test_pairing_is_deterministic():
    f = [Example(f"f{i}", "a") for i in range(5)]
    r = [Example(f"r{i}", "a") for i in range(3)]
    a, b = PairedDataset(f, r, seed=1), PairedDataset(f, r, seed=1)
    assert len(a) == 5 and [a[i]["retain"] for i in range(5)] == [b[i]["retain"] for i in range(5)]
    assert all(a[i]["forget"] is f[i] for i in range(5))


def test_refusal_pool():
    assert len(set(REFUSALS)) >= 300
    assert sample_refusals(10, seed=3) == sample_refusals(10, seed=3)
    assert len(set(sample_refusals(50, seed=0))) > 20
    assert all(is_refusal(r) for r in REFUSALS) and not is_refusal("Ada was born in Lviv.")


@pytest.mark.parametrize("kind", ["llama", "llava_onevision", "qwen2_5_vl"])
def test_labels_cover_answer_only(kind, tiny_model, vlm_data, text_data):
    loaded = load_model(tiny_model(kind))
    data = text_data if kind == "llama" else vlm_data
    forget, retain = load_jsonl(data[0]), load_jsonl(data[1])
    coll = SFTCollator(loaded.processor)
    tok = coll.encoder.tokenizer
    batch = coll.encode_batch([forget[0], retain[0], retain[1]])  # image, text-only, image (VLM)
    for i, ex in enumerate([forget[0], retain[0], retain[1]]):
        lab = batch["labels"][i]
        assert tok.decode(lab[lab != -100]) == ex.answer + tok.eos_token
        prompt = batch["input_ids"][i][(lab == -100) & (batch["attention_mask"][i] == 1)]
        assert ex.question in tok.decode(prompt)
    with torch.no_grad():
        out = loaded.model(**batch)  # mixed image / text-only batch runs
    assert torch.isfinite(out.loss)


def test_paired_collator_shapes(tiny_model, vlm_data):
    loaded = load_model(tiny_model("qwen2_5_vl"))
    ds = PairedDataset(load_jsonl(vlm_data[0]), load_jsonl(vlm_data[1]))
    batch = PairedCollator(loaded.processor)([ds[0], ds[1]])
    assert set(batch) == {"forget", "retain"}
    assert batch["forget"]["input_ids"].shape[0] == 2
    assert batch["forget"]["image_grid_thw"].shape == (2, 3)
