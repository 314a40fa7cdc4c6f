"""`smfa bench build`: profiles, images, fine-tuning / general / unlearning / evaluation sets.

The output is a pure function of (profiles, seed, general images, image size): every random
choice comes from a string-seeded `random.Random`, and PNGs are written without metadata.
The tree is built in a temporary sibling and renamed into place when complete.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

from .general_eval import default_count, write_unseen_set
from .images import draw_clinical, draw_portrait, png_bytes, sample_clinical, sample_portrait
from .items import eval_items, finetune_items, template_eval_items, understanding_items  # noqa: F401 (also their old place)
from .profiles import ProfileDraw, sample_profiles
from .rewordings import pretrain_items, reworded_memory, reworded_understanding
from .schema import SCHEMA_VERSION, Manifest, QAItem, Split, write_jsonl

FORGET_RATIOS = {"forget05": 0.05, "forget10": 0.10, "forget15": 0.15}


def make_splits(ids: list[str], seed: int) -> dict[str, Split]:
    """Nested forget sets (5 ⊂ 10 ⊂ 15 %) and few-shot retain sets of equal size, disjoint from
    every forget set."""
    if len(ids) < 2:
        raise ValueError("need at least 2 profiles to make forget/retain splits")
    perm = list(ids)
    random.Random(f"smfa-bench:{seed}:splits").shuffle(perm)
    n_max = max(1, round(len(ids) * max(FORGET_RATIOS.values())))
    splits = {}
    for name, ratio in FORGET_RATIOS.items():
        n = max(1, round(len(ids) * ratio))
        retain = perm[n_max:n_max + n]
        if len(retain) < n:
            raise ValueError(f"{len(ids)} profiles are too few for split {name}")
        splits[name] = Split(name=name, forget=sorted(perm[:n]), retain_fewshot=sorted(retain),
                             forget_file=f"unlearn/{name}_forget.jsonl", retain_file=f"unlearn/{name}_retain.jsonl")
    return splits


def build(out: str | Path, profiles: int = 1000, seed: int = 0, general_images: int | None = None,
          image_size: int = 128, overwrite: bool = False,
          progress: Callable[[int], None] | None = None, rewordings: int = 0,
          pretrain_people: int = 0, unseen_images: int | None = None, holdout: int = 0) -> Manifest:
    """Build the benchmark under `out`; `progress(n)` is called as images are written.
    `rewordings` > 0 adds reworded.jsonl (that many training rewordings per fact and per
    understanding question); `pretrain_people` > 0 adds pretrain.jsonl about that many people
    who are in no split (see `rewordings.py`); `holdout` > 0 adds that many holdout profiles,
    in no fine-tuning set (see `holdout.py`). `unseen_images` (default: an eighth of the
    general images, at least 2) is the size of the unseen-image evaluation set
    (`general_eval.py`)."""
    if rewordings < 0 or pretrain_people < 0 or holdout < 0 or (unseen_images or 0) < 0:
        raise ValueError("rewordings, pretrain_people, unseen_images and holdout must be >= 0")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (use overwrite)")
    n_general = 2 * profiles if general_images is None else general_images
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    for sub in ("images/portraits", "images/clinical", "images/general", "unlearn"):
        (tmp / sub).mkdir(parents=True)

    draws = sample_profiles(profiles, seed)
    finetune, evaluation, seen_phrasing = _profile_items(tmp, draws, seed, image_size, progress)
    general = _general_items(tmp, n_general, seed, image_size, progress)
    files = {"profiles": "profiles.jsonl", "finetune": "finetune.jsonl", "general": "general.jsonl",
             "eval": "eval.jsonl", "eval_template": "eval_template.jsonl"}
    write_jsonl(tmp / "eval_template.jsonl", [i.to_dict() for i in seen_phrasing])
    if rewordings:
        rng = random.Random(f"smfa-bench:{seed}:reworded")
        extra = [it for d in draws for it in reworded_memory(d, rng, rewordings)]
        extra += reworded_understanding(general, rng, rewordings)
        write_jsonl(tmp / "reworded.jsonl", [i.to_dict() for i in extra])
        files["reworded"] = "reworded.jsonl"
    people: list[ProfileDraw] = []
    if pretrain_people:
        people = _pretrain_people(tmp, draws, pretrain_people, seed, image_size, max(rewordings, 2), progress)
        files["pretrain"] = "pretrain.jsonl"
    holdout_ids: list[str] = []
    if holdout:
        from .holdout import holdout_draws, write_holdout

        hold = holdout_draws(holdout, seed, draws + people)
        files.update(write_holdout(tmp, hold, seed, image_size))
        holdout_ids = [d.profile.id for d in hold]
        if progress:
            progress(2 * holdout)

    # last among the images: the unseen set is drawn against every training image written above
    n_unseen = default_count(n_general) if unseen_images is None else unseen_images
    files.update(write_unseen_set(tmp, seed=seed, n=n_unseen, image_size=image_size))
    splits = make_splits([d.profile.id for d in draws], seed)
    _write_split_files(tmp, splits, finetune)
    write_jsonl(tmp / "profiles.jsonl", [d.profile.to_dict() for d in draws])
    write_jsonl(tmp / "finetune.jsonl", [i.to_dict() for i in finetune])
    write_jsonl(tmp / "general.jsonl", [i.to_dict() for i in general])
    write_jsonl(tmp / "eval.jsonl", [i.to_dict() for i in evaluation])
    manifest = Manifest(schema_version=SCHEMA_VERSION, seed=seed, n_profiles=profiles, image_size=image_size,
                        files=files, splits=splits, rewordings=rewordings, pretrain_people=pretrain_people,
                        unseen_images=n_unseen, holdout=holdout_ids)
    (tmp / "manifest.json").write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return manifest


def _profile_items(tmp: Path, draws: list[ProfileDraw], seed: int, image_size: int,
                   progress: Callable[[int], None] | None) -> tuple[list[QAItem], list[QAItem], list[QAItem]]:
    """Each profile's images, and its (fine-tuning, evaluation, fine-tuning-worded evaluation) items."""
    finetune: list[QAItem] = []
    evaluation: list[QAItem] = []
    seen_phrasing: list[QAItem] = []  # the evaluation's second view: the fine-tuning wordings
    for d in draws:
        p = d.profile
        (tmp / p.portrait).write_bytes(png_bytes(draw_portrait(d.portrait, image_size)))
        (tmp / p.clinical_image).write_bytes(png_bytes(draw_clinical(d.clinical, image_size)))
        finetune += finetune_items(d)
        evaluation += eval_items(d, random.Random(f"smfa-bench:{seed}:eval:{p.id}"))
        seen_phrasing += template_eval_items(d)
        if progress:
            progress(2)
    return finetune, evaluation, seen_phrasing


def _general_items(tmp: Path, n: int, seed: int, image_size: int,
                   progress: Callable[[int], None] | None) -> list[QAItem]:
    """The general-understanding images (portraits and fundus images of nobody, alternating) and their QA."""
    general: list[QAItem] = []
    for g in range(n):
        rng = random.Random(f"smfa-bench:{seed}:general:{g}")
        rel = f"images/general/g{g:06d}.png"
        if g % 2 == 0:
            pa = sample_portrait(rng)
            (tmp / rel).write_bytes(png_bytes(draw_portrait(pa, image_size)))
            general += understanding_items(None, rel, None, pa.to_dict(), None, "", rng, train=True, prefix=f"g{g:06d}")
        else:
            ca = sample_clinical(rng)
            (tmp / rel).write_bytes(png_bytes(draw_clinical(ca, image_size)))
            general += understanding_items(None, None, rel, None, ca.to_dict(), ca.description(), rng, train=True,
                                           prefix=f"g{g:06d}")
        if progress:
            progress(1)
    return general


def _pretrain_people(tmp: Path, draws: list[ProfileDraw], n: int, seed: int, image_size: int, wordings: int,
                     progress: Callable[[int], None] | None) -> list[ProfileDraw]:
    """pretrain.jsonl: `n` people in no split (names and faces not the benchmark's), their images."""
    rng = random.Random(f"smfa-bench:{seed}:pretrain")
    people = sample_profiles(n, seed, namespace="pretrain", id_prefix="q", taken=draws)
    pre: list[QAItem] = []
    for d in people:
        (tmp / d.profile.portrait).write_bytes(png_bytes(draw_portrait(d.portrait, image_size)))
        (tmp / d.profile.clinical_image).write_bytes(png_bytes(draw_clinical(d.clinical, image_size)))
        pre += pretrain_items(d, rng, wordings)
        if progress:
            progress(2)
    write_jsonl(tmp / "pretrain.jsonl", [i.to_dict() for i in pre])
    return people


def _write_split_files(tmp: Path, splits: dict[str, Split], finetune: list[QAItem]) -> None:
    """Each split's forget and few-shot retain files: the fine-tuning items of its profiles."""
    by_profile: dict[str, list[dict]] = {}
    for it in finetune:
        by_profile.setdefault(it.profile_id or "", []).append(it.to_dict())
    for s in splits.values():
        write_jsonl(tmp / s.forget_file, [r for pid in s.forget for r in by_profile[pid]])
        write_jsonl(tmp / s.retain_file, [r for pid in s.retain_fewshot for r in by_profile[pid]])
