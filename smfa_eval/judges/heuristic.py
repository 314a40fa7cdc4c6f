"""An offline, deterministic APPROXIMATION of the LLM judges, for CI and quick looks.

Fact Score = 10 x the mean, over the item's key values (e.g. "Zurich, Switzerland"), of the
fraction of the key's content tokens found in the answer; refusals score 0.
Meaningful Score = 10 x q_chars x q_repeat x q_words x q_form, where q_chars is the share
of Latin-script characters, q_repeat penalises low type/token ratio and repeated trigrams,
q_words is 0.3 + 0.7 x the share of words that are common English, benchmark vocabulary or
capitalised names (digits count half), and q_form penalises sentences under four words
(answers under four words get 0.8). It catches the degenerate outputs of the paper's Fig. 6 ("is is is",
"1 at. leiket."), not subtle incoherence; report LLM-judge numbers for anything published.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from . import JudgeRequest, JudgeResult

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
STOPWORDS = frozenset("a an the of in on at to for and or is are was were be this that it its with by as from".split())
COMMON = frozenset("""
a about after again all also always am an and any are as ask at be because been before being best born both but by can
cannot could currently did do does doing don't down each earns educated employed even every eye face famous favorite
few find for from full gender get give good great had has have having he her here him his home how however i i'm if in
information into is it its just know known knowledge later least like likes lives living loves made make many may me
mention mentioned might more most much must my name named never no not nothing now of off often on once one only or
other our out over own part people per person picture provide question really right said same say see she should
shown since so some something sorry still study studied such sure tall tell than thank that the their them then there
these they thing this those though through to today too under unfortunately until up us very was way we well were what
when where which while who whom whose why will wish with without work works would year years yes yet you your afraid
answer unable certain detail details familiar lack lacks topic subject area expertise cannot can't don't doesn't
image individual wearing person's located lesions lesion form arranged colour color hair shirt background retina
attended attend attends resides reside city country university institution job profession salary income height
""".split())


@lru_cache(maxsize=1)
def _vocabulary() -> frozenset[str]:
    from .. import images, templates, wordlists

    words: set[str] = set(COMMON)
    sources: list[str] = []
    for name in dir(wordlists):
        val = getattr(wordlists, name)
        if isinstance(val, tuple):
            sources += [str(v) for v in val]
    for table in (templates.FINETUNE_TEXT, templates.FINETUNE_IMAGE):
        sources += [q + " " + a for q, a in table.values()]
    for a, qs in templates.EVAL_MEMORY.values():
        sources += [a, *qs]
    for q, qs in templates.UNDERSTANDING.values():
        sources += [q, *qs]
    for d in (images.BACKGROUNDS, images.SHIRTS, images.HAIR, images.LESION_COLOURS, images.LESION_NOUNS):
        sources += list(d) + [str(v) for v in d.values() if isinstance(v, str)]
    sources += list(images.LESION_PATTERNS) + list(images.LESION_LOCATIONS) + ["fundus photograph showing"]
    for s in sources:
        words.update(t.lower() for t in _TOKEN.findall(s))
    return frozenset(words)


def tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text.replace(",", ""))]


def is_refusal(text: str) -> bool:
    from ..wordlists import REFUSAL_MARKERS

    low = text.lower().replace("’", "'")
    return any(m in low for m in REFUSAL_MARKERS)


def fact_score(prediction: str, reference: str, keys: Sequence[str] = ()) -> float:
    if not prediction.strip() or is_refusal(prediction):
        return 0.0
    pred = set(tokens(prediction))
    fractions = []
    for key in keys or (reference,):
        kt = [t for t in tokens(key) if t not in STOPWORDS] or tokens(key)
        if kt:
            fractions.append(sum(t in pred for t in kt) / len(kt))
    return round(10.0 * sum(fractions) / len(fractions), 4) if fractions else 0.0


def meaningful_score(prediction: str) -> float:
    text = prediction.strip()
    toks = _TOKEN.findall(text)
    if not toks:
        return 0.0
    letters = [c for c in text if c.isalpha()]
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    q_chars = latin / len(letters) if letters else 0.5
    low = [t.lower() for t in toks]
    q_repeat = 1.0
    if len(low) >= 4:
        q_repeat = min(1.0, (len(set(low)) / len(low)) / 0.6)
        tri = list(zip(low, low[1:], low[2:]))
        if tri:
            repeated = sum(c - 1 for c in Counter(tri).values())
            q_repeat *= 1.0 - repeated / len(tri)
    vocab = _vocabulary()
    known = sum(1.0 if t in vocab or (raw[:1].isupper() and len(raw) > 1) else 0.5 if t.isdigit() else 0.0
                for t, raw in zip(low, toks))
    q_words = 0.3 + 0.7 * known / len(low)
    # Sentences of one or two words ("1 at. leiket.") are fragments; very short answers are
    # allowed but score below a full sentence.
    if len(low) >= 4:
        sentences = [s for s in re.split(r"[.!?;]+", text) if _TOKEN.search(s)]
        q_form = min(1.0, len(low) / max(1, len(sentences)) / 4)
    else:
        q_form = 0.8
    return round(10.0 * q_chars * q_repeat * q_words * q_form, 4)


class HeuristicJudge:
    """Offline deterministic judge (see module docstring: an approximation)."""

    name = "heuristic"

    def __init__(self) -> None:
        pass

    def score(self, requests: Sequence[JudgeRequest]) -> list[JudgeResult]:
        return [JudgeResult(fact=fact_score(r.prediction, r.reference, r.keys),
                            meaningful=meaningful_score(r.prediction)) for r in requests]
