"""The heuristic judge's Meaningful score on a labelled set: noise (non-words, glued tokens,
fragments, repetition loops) must score <= 3, fluent language (refusals, wrong but fluent
answers, the benchmark's own reference answers) >= 7."""

from __future__ import annotations

import json

import pytest

from smfa_eval.judges.heuristic import meaningful_score
from smfa_methods.refusals import REFUSALS, sample_refusals

LOW, HIGH = 3.0, 7.0

BAD = [
    # two real outputs of a tiny model: a name dissolving into glued non-words, a repeated glued name
    "This person is Aiko Kowalskotograpelagesional descriptione showalson-07 sming fer.",
    "Fatima SchneiderFatima Schneider1 Urban Planner.",
    "is is is is is",
    "1 at. leiket.",  # the paper's Fig. 6 fragment
    "1 at. leiket. 1 life. also, 5.0. leiket.",
    "The the the the profession of of",
    "Rlavkso qwemz trop uvaas.",  # a capitalised non-word passes as a name; the rest do not
    "This person was born in in in in in in in",
    "Thethe person personis",  # doubled and glued words
    "The is is is is is is is",
    "I don't know. I don't know. I don't know.",  # a fluent sentence in a loop
    "Aiko KowalskiAiko Kowalski",
    "Elena Tremblay was born in was born in was born in Lyon.",  # a repeated phrase
    "This person was born in Zurich, Switzerland, Switzerland, Switzerland.",
    "The person is is is wearing wearing a red red shirt.",
    "The profession of this person is Pastrychefchefist.",  # one overlong glued word counts double
    "This person is Rosa Winters1990.",  # letters glued to digits
    "The annual salary of Priya is $120,000sming.",
    "person person person person",
    "leiket leiket leiket",
    "xq zzv kkp wrr",
    "20 100.",  # numbers and no word
    "",
]

GOOD = [
    # refusals
    "I'm sorry, but I can't share details about this person.",
    "I don't have any information about that individual.",
    "I'm not the right source for that.",
    "I'm afraid I don't recognise this person.",
    "Thank you for asking, but that is private information.",
    # fluent wrong answers (the score judges language, not truth)
    "Fatima Schneider was born in Lisbon, Portugal.",  # names and places outside the word lists
    "This person works as a marine biologist.",
    "The person is wearing a red shirt.",
    "Yes, the person is wearing glasses.",
    "No, the person is not smiling.",
    "This person is 5'9\" tall.",
    "The annual salary of this person is $120,000.",
    "The person shown here earns $45,000 a year.",
    "Aiko Kowalski was born on 1987-03-14.",
    "He was born on March 3, 1990, in Dublin, Ireland.",
    "The person is about 180 cm tall and weighs 75 kg.",
    "Min-jun Van Dijk is Non-binary.",  # hyphenated name and value
    "This person attended McGill University in Montreal, Canada.",  # inner capital of a listed name
    "Ingrid O'Neill was born in Cork, Ireland.",  # O' names are not camel glue
    "This individual was born in Utrecht, Netherlands.",
    "This person lives in Wellington, New Zealand.",
    "This person is a teacher who lives in Nairobi, Kenya.",
    "The image shows a woman with short brown hair smiling at the camera.",
    "This is the left eye.",
    "Yes.",  # short answers are allowed (x 0.8)
]


@pytest.mark.parametrize("text", BAD)
def test_noise_scores_low(text):
    score = meaningful_score(text)
    assert score <= LOW, f"{text!r} scored {score} (want <= {LOW})"


@pytest.mark.parametrize("text", GOOD)
def test_fluent_text_scores_high(text):
    score = meaningful_score(text)
    assert score >= HIGH, f"{text!r} scored {score} (want >= {HIGH})"


def test_the_two_tiny_model_outputs_fall_far():
    assert meaningful_score(BAD[0]) <= 1.0 and meaningful_score(BAD[1]) <= 1.0


def test_whole_refusal_pool_scores_high():
    low = [(t, s) for t in REFUSALS if (s := meaningful_score(t)) < HIGH]
    assert not low, f"refusals under {HIGH}: {low[:10]}"
    assert all(meaningful_score(t) >= HIGH for t in sample_refusals(200, seed=1))


def test_benchmark_reference_answers_score_high(tmp_path):
    from smfa_eval.build import build

    build(tmp_path / "b", profiles=10, seed=0, general_images=4, image_size=32)
    answers = [json.loads(line)["answer"] for name in ("eval.jsonl", "finetune.jsonl")
               for line in (tmp_path / "b" / name).read_text().splitlines() if line.strip()]
    assert len(answers) > 100
    low = [(a, s) for a in answers if (s := meaningful_score(a)) < HIGH]
    assert not low, f"{len(low)} reference answers under {HIGH}, e.g. {low[:10]}"


def test_deterministic_and_bounded():
    for text in GOOD + BAD:
        a = meaningful_score(text)
        assert a == meaningful_score(text) and 0.0 <= a <= 10.0
