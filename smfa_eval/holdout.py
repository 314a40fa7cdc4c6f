"""Holdout profiles: people drawn like the benchmark's own but in no fine-tuning set, no
split and no evaluation file of the original. They are the non-members of membership
inference (a model that never saw the forget profiles treats them like these) and the
"never seen" reference of the privacy metrics.

Files (written by `bench build --holdout N`, named in the manifest, schema 1.2):

    holdout.jsonl        the holdout profiles (ids "h00000"...)
    holdout_qa.jsonl     their QA in the fine-tuning wordings: the non-member counterpart of
                         unlearn/*_forget.jsonl, which is what MIA scores on the member side
    holdout_eval.jsonl   their evaluation items (paraphrased questions), for checks on answers
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from .images import draw_clinical, draw_portrait, png_bytes
from .items import eval_items, finetune_items
from .profiles import ProfileDraw, sample_profiles
from .schema import Bench, BenchDataError, QAItem, write_jsonl

HOLDOUT_FILES = {"holdout": "holdout.jsonl", "holdout_qa": "holdout_qa.jsonl", "holdout_eval": "holdout_eval.jsonl"}


def holdout_draws(n: int, seed: int, taken: Sequence[ProfileDraw]) -> list[ProfileDraw]:
    """n profiles with names and faces disjoint from `taken` (the benchmark's own profiles
    and its pre-training people): a holdout person must not be recognisable as anyone trained."""
    return sample_profiles(n, seed, namespace="holdout", id_prefix="h", taken=taken)


def write_holdout(tmp: Path, draws: Sequence[ProfileDraw], seed: int, image_size: int) -> dict[str, str]:
    """Write the holdout images and files under `tmp`; returns the manifest's file entries."""
    qa: list[QAItem] = []
    ev: list[QAItem] = []
    for d in draws:
        p = d.profile
        (tmp / p.portrait).write_bytes(png_bytes(draw_portrait(d.portrait, image_size)))
        (tmp / p.clinical_image).write_bytes(png_bytes(draw_clinical(d.clinical, image_size)))
        qa += finetune_items(d)
        ev += eval_items(d, random.Random(f"smfa-bench:{seed}:holdout-eval:{p.id}"))
    write_jsonl(tmp / HOLDOUT_FILES["holdout"], [d.profile.to_dict() for d in draws])
    write_jsonl(tmp / HOLDOUT_FILES["holdout_qa"], [i.to_dict() for i in qa])
    write_jsonl(tmp / HOLDOUT_FILES["holdout_eval"], [i.to_dict() for i in ev])
    return dict(HOLDOUT_FILES)


def holdout_qa(bench: Bench) -> list[QAItem]:
    """The holdout profiles' fine-tuning-worded QA; a one-line error when the benchmark has none."""
    if "holdout_qa" not in bench.manifest.files:
        raise BenchDataError(f"{bench.root / 'manifest.json'}: no holdout profiles (membership inference needs "
                             "them; rebuild with `smfa bench build --holdout N`)")
    return bench.qa("holdout_qa")
