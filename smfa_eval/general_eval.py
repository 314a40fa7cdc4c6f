"""Utility on unseen images: a general evaluation set on images that are in no training set.

The profiles' understanding items ask about the profiles' own portraits and clinical images,
which the model was fine-tuned on; a method that breaks the vision path, or whose refusals
spread to every image, can still score there. This set asks the general training data's
question kinds about freshly drawn images (task `general_understanding`, evaluation set
`unseen`), and `bench build` guarantees by pixel hash that none of them equals any image
already in the tree (profiles, general training images, pre-training people).

Two files, one per phrasing, so that every evaluation view scores it: `general_eval.jsonl`
(the evaluation's paraphrases, read with `eval`) and `general_eval_template.jsonl` (the
training wordings, read with `eval_template`); `evaluate.select_items` adds them as set
`unseen` (see `EXTRA_SETS` in schema.py).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from pathlib import Path

from PIL import Image

from .images import draw_clinical, draw_portrait, png_bytes, sample_clinical, sample_portrait
from .items import understanding_items
from .schema import QAItem, write_jsonl

TASK = "general_understanding"
SET = "unseen"
IMAGE_DIR = "images/unseen"
FILES = {"general_eval": "general_eval.jsonl", "general_eval_template": "general_eval_template.jsonl"}


def default_count(general_images: int) -> int:
    """Unseen images when the caller gives no number: an eighth of the general training
    images, at least one portrait and one clinical image."""
    return max(2, round(general_images / 8))


def pixel_hash(img: Image.Image) -> str:
    """A hash of the pixels alone (size, RGB values), independent of the PNG encoding."""
    rgb = img.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


def tree_image_hashes(root: Path, exclude: str = IMAGE_DIR) -> set[str]:
    """Pixel hashes of every PNG under root/images except those under `exclude`."""
    out = set()
    skip = (root / exclude).resolve()
    for p in sorted((root / "images").rglob("*.png")):
        if skip in p.resolve().parents:
            continue
        with Image.open(p) as img:
            out.add(pixel_hash(img))
    return out


def _items(g: int, rel: str, kind: str, attrs: dict, description: str, rng: random.Random, *,
           train: bool) -> list[QAItem]:

    portrait, clinical = (rel, None) if kind == "portrait" else (None, rel)
    pa, ca = (attrs, None) if kind == "portrait" else (None, attrs)
    items = understanding_items(None, portrait, clinical, pa, ca, description, rng, train=train, prefix=f"u{g:06d}")
    return [replace(it, task=TASK) for it in items]


def write_unseen_set(root: Path, *, seed: int, n: int, image_size: int) -> dict[str, str]:
    """Draw `n` images (portraits and clinical images alternately) whose pixels equal no image
    already under root/images, write them and both item files; returns the manifest entries."""
    if n < 0:
        raise ValueError("unseen images must be >= 0")
    taken = tree_image_hashes(root)
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    paraphrased: list[QAItem] = []
    template: list[QAItem] = []
    for g in range(n):
        rng = random.Random(f"smfa-bench:{seed}:unseen:{g}")
        kind = "portrait" if g % 2 == 0 else "clinical"
        for _ in range(1000):  # rejection: an image the model trained on is not "unseen"
            if kind == "portrait":
                pa = sample_portrait(rng)
                img, attrs, desc = draw_portrait(pa, image_size), pa.to_dict(), ""
            else:
                ca = sample_clinical(rng)
                img, attrs, desc = draw_clinical(ca, image_size), ca.to_dict(), ca.description()
            h = pixel_hash(img)
            if h not in taken:
                break
        else:
            raise ValueError(f"cannot draw {n} unseen images distinct from the training images")
        taken.add(h)
        rel = f"{IMAGE_DIR}/u{g:06d}.png"
        (root / rel).write_bytes(png_bytes(img))
        # separate streams so the paraphrase draw does not depend on the template view
        paraphrased += _items(g, rel, kind, attrs, desc, random.Random(f"smfa-bench:{seed}:unseen-q:{g}"),
                              train=False)
        template += _items(g, rel, kind, attrs, desc, rng, train=True)
    write_jsonl(root / FILES["general_eval"], [i.to_dict() for i in paraphrased])
    write_jsonl(root / FILES["general_eval_template"], [i.to_dict() for i in template])
    return dict(FILES)
