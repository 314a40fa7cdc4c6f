"""The unseen-image evaluation set: its images equal no training image (pixel hashes against
every image of the tree), its questions are the general training data's kinds, and every
evaluation scores it as set `unseen`, with the over-refusal rate."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import pytest
from PIL import Image

from smfa_eval import templates as T
from smfa_eval.build import build
from smfa_eval.evaluate import run_eval, select_items
from smfa_eval.general_eval import write_unseen_set
from smfa_eval.images import draw_portrait, sample_portrait
from smfa_eval.judges import get_judge
from smfa_eval.schema import Bench

TRAINING_FILES = ("finetune", "general", "reworded", "pretrain")


def _hash(path: Path) -> str:
    img = Image.open(path).convert("RGB")
    return hashlib.sha256(repr(img.size).encode() + img.tobytes()).hexdigest()


def overlaps(root: Path) -> list[str]:
    """Unseen images whose pixels equal a training image: every image a training file or an
    unlearning file names, and every other image in the tree."""
    m = json.loads((root / "manifest.json").read_text())
    train: set[Path] = {p for p in (root / "images").rglob("*.png") if "unseen" not in p.parts}
    files = [root / m["files"][k] for k in TRAINING_FILES if k in m["files"]]
    files += [root / s[f] for s in m["splits"].values() for f in ("forget_file", "retain_file")]
    for f in files:
        for line in f.read_text().splitlines():
            if json.loads(line).get("image"):
                train.add(root / json.loads(line)["image"])
    hashes = {_hash(p) for p in train}
    unseen = sorted((root / "images" / "unseen").glob("*.png"))
    assert unseen, "no unseen images"
    return [p.name for p in unseen if _hash(p) in hashes]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("unseen") / "b"
    build(out, profiles=6, seed=5, general_images=8, image_size=64, rewordings=1, pretrain_people=2,
          unseen_images=6)
    return out


def test_unseen_images_overlap_no_training_image(tree, tmp_path):
    assert overlaps(tree) == []
    m = Bench(tree).manifest
    assert m.unseen_images == 6 and len(list((tree / "images" / "unseen").glob("*.png"))) == 6
    # the check can fail: a training portrait copied over an unseen image is caught
    bad = tmp_path / "bad"
    shutil.copytree(tree, bad)
    shutil.copy(bad / "images" / "portraits" / "p00000.png", bad / "images" / "unseen" / "u000002.png")
    assert overlaps(bad) == ["u000002.png"]


def test_a_drawn_image_equal_to_a_training_image_is_redrawn(tmp_path):
    # put the first portrait the unseen set would draw into the tree as a "training" image
    root = tmp_path / "t"
    (root / "images" / "general").mkdir(parents=True)
    first = draw_portrait(sample_portrait(random.Random("smfa-bench:0:unseen:0")), 64)
    first.save(root / "images" / "general" / "g000000.png")
    write_unseen_set(root, seed=0, n=2, image_size=64)
    assert _hash(root / "images" / "unseen" / "u000000.png") != _hash(root / "images" / "general" / "g000000.png")
    assert overlaps_simple(root) == []


def overlaps_simple(root: Path) -> list[str]:
    train = {_hash(p) for p in (root / "images" / "general").glob("*.png")}
    return [p.name for p in (root / "images" / "unseen").glob("*.png") if _hash(p) in train]


def test_questions_are_the_general_training_kinds_in_both_phrasings(tree):
    b = Bench(tree)
    para, tpl = b.qa("general_eval"), b.qa("general_eval_template")
    train_q = {T.UNDERSTANDING[a][0] for a in T.UNDERSTANDING}
    general_attrs = {it.attribute for it in b.qa("general")}
    assert {it.attribute for it in tpl} == {it.attribute for it in para} <= general_attrs
    assert all(it.question in train_q for it in tpl)  # the training wording ...
    assert all(it.question in T.UNDERSTANDING[it.attribute][1] for it in para)  # ... and the eval paraphrases
    assert [it.id for it in para] == [it.id for it in tpl]
    assert [it.answer for it in para] == [it.answer for it in tpl]  # same images, same answers
    # 3 portraits x 7 questions + 3 clinical images x 5 questions
    assert len(para) == 3 * 7 + 3 * 5 and all(it.profile_id is None for it in para)


def test_every_evaluation_selects_the_unseen_set(tree):
    b = Bench(tree)
    for items_file in ("eval", "eval_template"):
        sel = select_items(b, "forget15", items=items_file)
        unseen = [e for e in sel if e.set == "unseen"]
        assert {e.item.task for e in unseen} == {"general_understanding"} and len(unseen) == 36
        assert {e.set for e in sel} == {"forget", "retain", "unseen"}
    limited = select_items(b, "forget15", limit=4)
    assert sum(e.set == "unseen" for e in limited) == 4


class Refuser:
    """Refuses about every other question (a model whose refusals spread)."""

    def generate(self, prompts):
        return ["I don't know." if i % 2 else "The background is beige." for i, _ in enumerate(prompts)]


def test_run_eval_scores_unseen_images_with_over_refusal(tree, tmp_path):
    s = run_eval(tree, "forget15", tmp_path / "e", judge=get_judge("heuristic"), judge_name="heuristic",
                 generator=Refuser(), batch_size=4, limit=6, progress=False)
    g = s["groups"]["unseen/general_understanding"]
    assert g["n"] == 6
    rows = [json.loads(x) for x in (tmp_path / "e" / "items.jsonl").read_text().splitlines()]
    unseen = [r for r in rows if r["set"] == "unseen"]
    assert g["refusal"] == pytest.approx(sum(r["refusal"] for r in unseen) / 6)
    assert {r["refusal"] for r in unseen} == {0.0, 1.0}  # batches of 4: indices 1 and 3 refuse
    assert all(r["fact"] == 0.0 for r in unseen if r["refusal"])
    lo, hi = g["ci"]["refusal"]
    assert lo <= g["refusal"] <= hi and hi > lo
    report = (tmp_path / "e" / "table1.md").read_text()
    assert "±" in report


def test_every_trained_refusal_counts_and_answers_do_not():
    from smfa_eval.evaluate import refuses
    from smfa_methods.refusals import REFUSALS

    assert all(refuses(r) for r in REFUSALS) and refuses("I'm not sure about that.")
    assert not any(refuses(a) for a in ("The background is beige.", "Yes, the person is wearing glasses.",
                                        "This is the left eye."))
