"""The question/answer items of one profile: fine-tuning items, the evaluation's paraphrases,
the "seen phrasing" view and the image-understanding items. Pure functions of a profile draw
(and a seeded rng), shared by the build, the holdout, the unseen-image set and the rewordings."""

from __future__ import annotations

import random
from dataclasses import replace

from . import templates as T
from .profiles import ProfileDraw
from .schema import QAItem


def memory_value(d: ProfileDraw, attr: str) -> str:
    """A profile's value of a memory attribute (talent, hobby and food are parts of the fun fact)."""
    return {"talent": d.talent, "hobby": d.hobby, "food": d.food}.get(attr) or getattr(d.profile, attr)


def _capital(s: str) -> str:
    return s[:1].upper() + s[1:]


def finetune_items(d: ProfileDraw) -> list[QAItem]:
    """One profile's fine-tuning QA items: a text-memory and an image-memory item per attribute."""
    p = d.profile
    items = []
    for attr, (q, a) in T.FINETUNE_TEXT.items():
        v = getattr(p, attr)
        items.append(QAItem(id=f"{p.id}-ft-text-{attr}", task="text_memory", question=q.format(n=p.name),
                            answer=a.format(n=p.name, v=v), attribute=attr, profile_id=p.id, keys=[v]))
    for attr, (q, a) in T.FINETUNE_IMAGE.items():
        v = getattr(p, attr)
        items.append(QAItem(id=f"{p.id}-ft-image-{attr}", task="image_memory", question=q, answer=a.format(v=v),
                            attribute=attr, profile_id=p.id, image=p.portrait, image_type="portrait", keys=[v]))
    return items


def eval_items(d: ProfileDraw, rng: random.Random) -> list[QAItem]:
    """One paraphrase per attribute and task, drawn from the pool."""
    p = d.profile
    items = []
    for attr, (a, qs) in T.EVAL_MEMORY.items():
        v = memory_value(d, attr)
        s = rng.choice(T.IMAGE_SUBJECTS)
        items.append(QAItem(id=f"{p.id}-im-{attr}", task="image_memory", question=_capital(rng.choice(qs).format(s=s)),
                            answer=_capital(a.format(S=_capital(s), s=s, v=v)), attribute=attr, profile_id=p.id,
                            image=p.portrait, image_type="portrait", keys=[v]))
        if attr == "name":
            continue  # asking for a name given the name is no memory test
        items.append(QAItem(id=f"{p.id}-tm-{attr}", task="text_memory", question=_capital(rng.choice(qs).format(s=p.name)),
                            answer=_capital(a.format(S=p.name, s=p.name, v=v)), attribute=attr, profile_id=p.id, keys=[v]))
    items += understanding_items(p.id, p.portrait, p.clinical_image, p.portrait_attrs, p.clinical_attrs,
                                 p.clinical_description, rng, train=False, prefix=f"{p.id}-iu")
    return items


def template_eval_items(d: ProfileDraw) -> list[QAItem]:
    """The "seen phrasing" evaluation: the fine-tuning questions themselves (memory) and the
    training questions of understanding, about the profile's own images."""
    p = d.profile
    items = [replace(it, id=it.id.replace("-ft-", "-tpl-", 1)) for it in finetune_items(d)]
    return items + understanding_items(p.id, p.portrait, p.clinical_image, p.portrait_attrs, p.clinical_attrs,
                                       p.clinical_description, random.Random(0), train=True, prefix=f"{p.id}-tpl-iu")


def understanding_items(pid: str | None, portrait: str | None, clinical: str | None, pa: dict | None,
                        ca: dict | None, description: str, rng: random.Random, *, train: bool,
                        prefix: str) -> list[QAItem]:
    """Image-understanding QA items of a portrait and/or clinical image (training or random eval wording)."""
    items = []
    groups = ((portrait, T.PORTRAIT_UNDERSTANDING, "portrait"), (clinical, T.CLINICAL_UNDERSTANDING, "clinical"))
    for image, names, kind in groups:
        if image is None:
            continue
        for attr in names:
            train_q, eval_qs = T.UNDERSTANDING[attr]
            q = train_q if train else rng.choice(eval_qs)
            a, keys = T.understanding_answer(attr, pa or {}, ca or {}, description)
            items.append(QAItem(id=f"{prefix}-{attr}", task="image_understanding", question=q, answer=a,
                                attribute=attr, profile_id=pid, image=image, image_type=kind, keys=keys))
    return items
