"""Multiple-choice options and perturbed answers for the MCQ accuracy and the truth ratio.

An item is eligible when its first key value appears verbatim in its reference answer
("This person was born in Lyon, France." with key "Lyon, France"). Its options are the
reference and the same sentence with the value replaced by other profiles' values of the
same attribute (three, when the benchmark has that many), chosen by a string-seeded RNG from
the item id: the same item always gets the same options. The perturbed answers are also the
truth ratio's false answers, so MCQ and truth ratio are two readings of one set of scores.

Distractors come from the holdout profiles first, the benchmark's own profiles only where the
holdout has too few values: a model prefers a value it was trained on (another profile's date
of birth) to one it never saw, so distractors from trained profiles would push a model that
never saw the forget set (the oracle) below chance instead of to it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from .schema import QAItem

N_OPTIONS = 4


def attribute_values(items: Iterable[QAItem]) -> dict[str, list[str]]:
    """attribute -> the sorted distinct first key values seen across `items`."""
    seen: dict[str, set[str]] = {}
    for it in items:
        if it.keys:
            seen.setdefault(it.attribute, set()).add(it.keys[0])
    return {a: sorted(v) for a, v in seen.items()}


def false_answers(item: QAItem, values: dict[str, list[str]], n: int = N_OPTIONS - 1,
                  preferred: dict[str, list[str]] | None = None) -> list[str]:
    """Up to `n` perturbed answers of `item` (empty when it is not eligible): values from
    `preferred` first, then from `values`."""
    if not item.keys or item.keys[0] not in item.answer:
        return []
    v = item.keys[0]
    rng = random.Random(f"smfa-mcq:{item.id}")
    picks: list[str] = []
    for source in (preferred or {}, values):
        others = [x for x in source.get(item.attribute, []) if x != v and x not in item.answer and x not in picks]
        picks += rng.sample(others, min(n - len(picks), len(others)))
    return [item.answer.replace(v, x) for x in picks]


def options(items: Sequence[QAItem], pool: Iterable[QAItem], holdout: Iterable[QAItem] = ()) -> dict[str, list[str]]:
    """item id -> [reference, false answers...] for each eligible item; the reference is
    option 0. Distractor values: `holdout` items' first, then `pool`'s (every profile's items)."""
    values, preferred = attribute_values(pool), attribute_values(holdout)
    out = {}
    for it in items:
        wrong = false_answers(it, values, preferred=preferred)
        if wrong:
            out[it.id] = [it.answer, *wrong]
    return out
