"""QA items in the training phrasings (`phrasings.py`), beyond the fixed templates:

- `reworded_items`: N rewordings of each fact of a profile (text and image memory), and of
  each understanding question about an image; `smfa bench build --rewordings N` writes them
  for the benchmark's profiles and general images to `reworded.jsonl`.
- `pretrain_items`: everything about a pre-training person (`--pretrain-people M`): the fixed
  templates, the rewordings, and understanding questions on their own images; written to
  `pretrain.jsonl`. These people are in no split and no evaluation: they exist so that a model
  built from scratch learns, before it meets the benchmark, that a fact asked in any wording
  is the same fact.
"""

from __future__ import annotations

import random

from . import phrasings as P
from . import templates as T
from .items import finetune_items, memory_value, understanding_items
from .profiles import ProfileDraw
from .schema import QAItem


def reworded_memory(d: ProfileDraw, rng: random.Random, n: int) -> list[QAItem]:
    """`n` reworded image- and text-memory QA items per attribute of one profile (no text item for the name)."""
    p = d.profile
    items = []
    for attr in P.TRAIN_MEMORY:
        v = memory_value(d, attr)
        for j, (q, a) in enumerate(P.reworded(attr, rng.choice(P.TRAIN_IMAGE_SUBJECTS), v, rng, n)):
            items.append(QAItem(id=f"{p.id}-rw-image-{attr}-{j}", task="image_memory", question=q, answer=a,
                                attribute=attr, profile_id=p.id, image=p.portrait, image_type="portrait", keys=[v]))
        if attr == "name":
            continue
        for j, (q, a) in enumerate(P.reworded(attr, p.name, v, rng, n)):
            items.append(QAItem(id=f"{p.id}-rw-text-{attr}-{j}", task="text_memory", question=q, answer=a,
                                attribute=attr, profile_id=p.id, keys=[v]))
    return items


def reworded_understanding(items: list[QAItem], rng: random.Random, n: int) -> list[QAItem]:
    """n rewordings of each understanding item's question (same image, same answer)."""
    out = []
    for it in items:
        for j, q in enumerate(P.reworded_understanding(it.attribute, rng, n)):
            out.append(QAItem(id=f"{it.id}-rw{j}", task=it.task, question=q, answer=it.answer,
                              attribute=it.attribute, profile_id=it.profile_id, image=it.image,
                              image_type=it.image_type, keys=list(it.keys)))
    return out


def profile_understanding(d: ProfileDraw, rng: random.Random) -> list[QAItem]:
    """Understanding items (fixed training questions) about a profile's own two images."""
    p = d.profile
    return understanding_items(p.id, p.portrait, p.clinical_image, p.portrait_attrs, p.clinical_attrs,
                               p.clinical_description, rng, train=True, prefix=f"{p.id}-ft-iu")


def pretrain_items(d: ProfileDraw, rng: random.Random, n: int) -> list[QAItem]:
    """All training items about one pre-training person."""
    understanding = profile_understanding(d, rng)
    extra = [QAItem(id=f"{d.profile.id}-ft-text-{attr}", task="text_memory",
                    question=T.FINETUNE_PARTS[attr][0].format(n=d.profile.name),
                    answer=T.FINETUNE_PARTS[attr][1].format(n=d.profile.name, v=memory_value(d, attr)),
                    attribute=attr, profile_id=d.profile.id, keys=[memory_value(d, attr)])
             for attr in T.FINETUNE_PARTS]
    return (finetune_items(d) + extra + reworded_memory(d, rng, n) + understanding
            + reworded_understanding(understanding, rng, n))
