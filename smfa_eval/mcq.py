"""Multiple-choice options and perturbed answers for the MCQ accuracy and the truth ratio.

An item is eligible when its first key value appears verbatim in its reference answer
("This person was born in Lyon, France." with key "Lyon, France"). Its options are the
reference and the same sentence with the value replaced by other profiles' values of the
same attribute (three, when the benchmark has that many), chosen by a string-seeded RNG from
the item id: the same item always gets the same options. The perturbed answers are also the
truth ratio's false answers, so MCQ and truth ratio are two readings of one set of scores.
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


def false_answers(item: QAItem, values: dict[str, list[str]], n: int = N_OPTIONS - 1) -> list[str]:
    """Up to `n` perturbed answers of `item` (empty when it is not eligible)."""
    if not item.keys or item.keys[0] not in item.answer:
        return []
    v = item.keys[0]
    others = [x for x in values.get(item.attribute, []) if x != v and x not in item.answer]
    picks = random.Random(f"smfa-mcq:{item.id}").sample(others, min(n, len(others)))
    return [item.answer.replace(v, x) for x in picks]


def options(items: Sequence[QAItem], pool: Iterable[QAItem]) -> dict[str, list[str]]:
    """item id -> [reference, false answers...] for each eligible item; the reference is
    option 0. `pool`: where the distractor values come from (every profile's items)."""
    values = attribute_values(pool)
    out = {}
    for it in items:
        wrong = false_answers(it, values)
        if wrong:
            out[it.id] = [it.answer, *wrong]
    return out
