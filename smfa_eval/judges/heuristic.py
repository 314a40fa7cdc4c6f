"""An offline, deterministic APPROXIMATION of the LLM judges, for CI and quick looks.

Fact Score = 10 x the mean, over the item's key values (e.g. "Zurich, Switzerland"), of the
fraction of the key's content tokens found in the answer; refusals score 0.

Meaningful Score = 10 x q_chars x q_words x q_repeat x q_form, a lexical check that tells noise
from language. Words are the whitespace-separated chunks, outer punctuation stripped. A word is
KNOWN when it (each hyphen part) is common English or benchmark vocabulary, possibly with an
ending ('s, n't, -s, -ed, -ing, -ly, -er, ...), a number/date/money/height token, a short
all-caps acronym, or a plausible capitalised name: letters only, <= 14 long, a vowel, no inner
capital past O'/Mc/Mac, not a doubled word ("Thethe"). An unknown word costs 1, a glued one
("SchneiderFatima", "Schneider1"), doubled or over 14 characters costs 2; with u = cost / words,
q_words = 1 - (u / 0.32) ** 1.5 (0 from u = 0.32): one unknown word in ten costs ~18%, two in
eight ~70%. q_repeat: each adjacent repeated word and each repeated capitalised pair (a name
said twice) costs 0.4, times min(1, type/token ratio of the non-stopwords / 0.6) and
1 - 2 x the share of repeated trigrams, on the words with glued tokens split. q_chars is the
share of Latin-script letters; q_form scales sentences averaging under four words down (answers
under four words get 0.8; with no alphabetic word, as "20 100.", x 0.35 more).
It catches the degenerate outputs of the paper's Fig. 6 ("is is is", "1 at. leiket.") and glued
name soup; it sees neither grammar, truth nor subtle incoherence, and fluent text full of words
outside its vocabulary scores low. Report LLM-judge numbers for anything published.
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
# Common English beyond the benchmark vocabulary (_vocabulary adds that), as base forms.
COMMON = frozenset("""
above accept access account across act action active actor actress actually add address adult advice affect afraid
after again against age agency agent ago agree air all allow almost along already also although always am among amount
an analysis ancient and animal announce annum another answer anyone anything anyway apart apologise apologize apology
appear appearance apply approach approve april area arm army around arrive art article asian ask assistant athlete
attack attention attorney august author available average avoid aware away baby back bad bag ball band bank bar base
basketball be bear beautiful because become bed been beer before began begin behavior being believe bell belong below
benefit beside between big bike bill biology bird bit bite blond blouse board boat body book boot border both bottle
bottom box boy brain branch break breakfast bridge brief bright bring brother budget build business busy but buy cake
call calm camera camp campus cap capital car care carry case cat catch cause cell center centimetres centre century
chair challenge champion chance change character charge cheap check cheek chemistry chest chicken chief children
choice choose church circle citizen civil claim class classic clean clear client climb clinic close clothes club cm
coach coast coat code coffee cold collar color common community company compare complete computer concern condition
conference confirm consider contact contain content continue control cook cool copy corner correct cost could count
country couple course court cousin cover create crime critic cross crowd cry culture cup curly customer cut dance
danger daughter dead deal dear death decade december decide deep degree deliver department depend design desk detail
develop die diet difference difficult dinner direct director discover discuss disease distance doctor document dog
dollars door double down draw dream dress drink drive drop drug dry due during each early earth east easy eat economic
economy edge edit editor effect effort eight either elect election else email emergency end energy engine enough enter
environment equal error especially establish euros even event ever every everyone everything evidence exact exam
example excellent except exchange exercise exist existent expect expensive experience expert expertise explain express
extra eyebrow factory fail fair fall false family famous fan far farm fashion fast fat father fear feature february
feel feet fellow few field fight figure file fill film finance financial fine finger finish fire firm first fish fit
fix flag floor flower fly focus follow foot football force foreign forget forward four free freedom fresh friday
friend front fruit full funny future game garden gas general gentle get girl glass global goal god gold golf good
government grade grand grandfather grandmother grass great grew grey ground group grow growth guess guest guide gun
guy had half hall hand happen happy hard he he's health healthy hear heart heat heavy hello help her here hide high
him his history hit hold holiday honestly hope hospital host hot hotel hour house however huge human humor hundred
hurt husband i i'd i'll i'm i've identical identity if ignore ill imagine important improve inch include increase
indeed individual industry inform injury inside instead interest international interview into introduce invite island
isn't issue it it's item jacket january jeans join joke journal judge july jump june just keep kg kid kind king
kitchen knee land language laptop last late laugh law lay lead learn least leave leg lesion less lesson let's letter
level library license lie life lift limit line lip list listen literature little local lock long lose lot low luck
lunch machine made magazine main maintain major majority make man manage many map march mark market marriage marry
master match material math matter may mean measure meat media medical medicine meet member men mental mention message
metal meters method metres middle might military milk million minute miss modern moment monday money month moon more
morning mother motor mouth move movie music must nation nature near necessary neck need network never newspaper next
nice night nine nobody noise none normal north note nothing notice novel november number nurse object obvious occur
ocean october off office official often oil okay old once one open operation opinion option order organization
original other our out outdoor outside own page pain paint pair pants paper parent partner party pass passion past
patient peace pen people perform perhaps period permanent photo physical physics piano pick piece plan plant plate
play pleasant poem poet point police policy political poor popular population portrait position positive possible post
pot pounds power practice prefer pregnant prepare present president press pretty prevent price print prison privacy
private probably problem process produce product professor program project property protect proud prove public pull
purpose push put quality question quick quiet quite race radio rain raise range rate rather reach read ready real
reason recall recent recognise recognize record reduce relationship release religious remain remember remove repeat
report represent research respond rest result return reveal rich ride rise risk river road rock role room rule run
rural sad safe said sale same sand saturday save say scene school scientist score sea season seat second secret
section security seek seem sell send senior sense september serious serve service set seven several sex shan't shape
share sharp she shoe shoot shop short should shy sick sign significant silver similar simple simply since sing single
sister sit site situation six size skin sleep slightly slim slow small smart snow so social society soft software
soldier solution some somebody someone something son song soon sorry sort space speak specific spend sport spring
staff stage standard star start state station stay step stick still stock stone stop store story straight strange
strategy strong structure student style subject success such suddenly suffer suggest suit summer sun sunday supply
support suppose surface surprise sweater sweet swim system table take talk task taste teach team technology teenager
telephone television temperature term test text than thank that theatre them then theory therefore these thick thin
thing think third those though thought thousand three through throw thursday ticket tie time tiny title together
tonight too tool tooth topic total touch tour toward trade tradition traffic train travel treat tree trial trip
trouble truck true trust truth try tuesday turn two type typical uncle understand unfortunately unit unknown unless
until up upon us use usual value various version very via victim view village visit voice vote wait walk wall want war
warm wash watch water wave way we we're weak wealth website wedding wednesday week weekend weighs weight welcome well
were west wet whatever wheel whether whole whom whose why wide wife wild will win window wine wire wise wish with
within without woman women won't wonder word work world worry write wrong yard yes yesterday yet young your youth zone
optic disc nerve vessel blood macula fovea favourite sushi pizza pasta rice soup salad cheese chocolate noodle curry
""".split())
_ENDINGS = tuple("'s n't 'm 're 've 'll 'd ' s es ies ied ier iest ily ed d ing ly er ers est ist ists ment ness al "
                 "ally ful less ian ians".split())
_NUMBER = re.compile(r"[$€£]?\d+(?:[.,:/-]\d+)*(?:%|st|nd|rd|th|s|k|m|cm|mm|km|kg|ft|am|pm)?|\d+'\d+\"?|\d+'")
_STRIP = " \t\n.,;:!?\"'()[]{}<>“”‘’*«»…"


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
        words.update(w.strip(_STRIP).lower() for w in s.split())
    return frozenset(words)


def tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens of `text`, commas removed first (so 1,000 stays one token)."""
    return [t.lower() for t in _TOKEN.findall(text.replace(",", ""))]


def is_refusal(text: str) -> bool:
    """Whether `text` contains a refusal marker (case-insensitive, curly apostrophes normalised)."""
    from ..wordlists import REFUSAL_MARKERS

    low = text.lower().replace("’", "'")
    return any(m in low for m in REFUSAL_MARKERS)


def fact_score(prediction: str, reference: str, keys: Sequence[str] = ()) -> float:
    """0-10: mean share of each key's content tokens found in the prediction; 0 for an empty answer or a refusal."""
    if not prediction.strip() or is_refusal(prediction):
        return 0.0
    pred = set(tokens(prediction))
    fractions = []
    for key in keys or (reference,):
        kt = [t for t in tokens(key) if t not in STOPWORDS] or tokens(key)
        if kt:
            fractions.append(sum(t in pred for t in kt) / len(kt))
    return round(10.0 * sum(fractions) / len(fractions), 4) if fractions else 0.0


def _in_vocab(low: str, vocab: frozenset[str]) -> bool:
    """In the vocabulary, or a vocabulary word plus a common ending (studies, running, painter)."""
    if low in vocab:
        return True
    for end in _ENDINGS:
        base = low[: -len(end)]
        if low.endswith(end) and len(base) >= 3:
            undoubled = base[:-1] if base[-1] == base[-2] else base
            if {base, base + "e", base + "y", undoubled} & vocab:
                return True
    return False


# Glue inside a token: lower->upper ("SchneiderFatima"), letters<->digits ("Schneider1").
_GLUE = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])|(?<=[a-zß-ÿ])(?=[A-ZÀ-Þ])")


def _doubled(low: str, vocab: frozenset[str]) -> bool:
    half = len(low) // 2
    return len(low) % 2 == 0 and low[:half] == low[half:] and low[:half] in vocab  # "thethe"


def _is_name(part: str, vocab: frozenset[str]) -> bool:
    """A plausible capitalised name or word: letters only, no inner capital (past O'/Mc/Mac),
    not a doubled word."""
    part = re.sub(r"^(?:[A-Z]'|Mc|Mac)(?=[A-Z])", "", part)
    return (part[:1].isupper() and part[1:].islower() and part.isalpha() and 2 <= len(part) <= 14
            and any(c in "aeiouyäöüéèáíóú" for c in part.lower()) and not _doubled(part.lower(), vocab))


def _cost(word: str, vocab: frozenset[str]) -> int:
    """0 for a known word, 1 for an unknown one, 2 for a glued, doubled or overlong one."""
    if _NUMBER.fullmatch(word):
        return 0
    parts = word.replace("’", "'").split("-")
    if all(p and (_in_vocab(p.lower(), vocab) or _is_name(p, vocab) or _NUMBER.fullmatch(p) is not None
                  or (p.isupper() and p.isalpha() and len(p) <= 5)) for p in parts):
        return 0
    return 2 if len(word) > 14 or _GLUE.search(word) or _doubled(word.lower(), vocab) else 1


def meaningful_score(prediction: str) -> float:
    """0-10 fluency score: Latin script, known words, no repetition, sentence form; 0 without any word."""
    text = prediction.strip()
    words = [w for w in (w.strip(_STRIP) for w in text.split()) if w and _TOKEN.search(w)]
    if not words:
        return 0.0
    letters = [c for c in text if c.isalpha()]
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    q_chars = latin / len(letters) if letters else 0.5
    vocab = _vocabulary()
    unknown = min(1.0, sum(_cost(w, vocab) for w in words) / len(words))
    q_words = 1.0 - (unknown / 0.32) ** 1.5 if unknown < 0.32 else 0.0
    raw = [p for w in words for p in _GLUE.sub(" ", w).split()]
    low = [t.lower() for t in raw]
    adjacent = sum(a == b for a, b in zip(low, low[1:]))
    caps = [(a, b) for a, b in zip(raw, raw[1:]) if a[:1].isupper() and b[:1].isupper()]
    names_again = sum(c - 1 for c in Counter(caps).values())
    q_repeat = max(0.0, 1.0 - 0.4 * adjacent - 0.4 * names_again)
    if len(low) >= 4:
        content = [t for t in low if t not in STOPWORDS]
        if len(content) >= 4:
            q_repeat *= min(1.0, (len(set(content)) / len(content)) / 0.6)
        tri = list(zip(low, low[1:], low[2:]))
        if tri:
            q_repeat *= max(0.0, 1.0 - 2 * sum(c - 1 for c in Counter(tri).values()) / len(tri))
    # Sentences of one or two words ("1 at. leiket.") are fragments; very short answers are
    # allowed but score below a full sentence; answers with no word at all ("20 100.") are noise.
    if len(words) >= 4:
        sentences = [s for s in re.split(r"[.!?;]+(?:\s|$)", text) if _TOKEN.search(s)]
        q_form = min(1.0, len(words) / max(1, len(sentences)) / 4)
    else:
        q_form = 0.8
    if not any(c.isalpha() for w in words for c in w):
        q_form *= 0.35
    return round(10.0 * q_chars * q_words * q_repeat * q_form, 4)


class HeuristicJudge:
    """Offline deterministic judge (see module docstring: an approximation)."""

    name = "heuristic"

    def __init__(self) -> None:
        pass

    def score(self, requests: Sequence[JudgeRequest]) -> list[JudgeResult]:
        return [JudgeResult(fact=fact_score(r.prediction, r.reference, r.keys),
                            meaningful=meaningful_score(r.prediction)) for r in requests]
