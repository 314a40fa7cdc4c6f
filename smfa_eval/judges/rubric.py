"""Rubric prompts (prompts/*.txt) and the strict score parser shared by the LLM judges."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from . import JudgeRequest

METRICS = ("fact", "meaningful")
PROMPTS_DIR = Path(__file__).with_name("prompts")

_NUMBER = r"(\d{1,2}(?:\.\d+)?)"
_BARE = re.compile(rf"^\s*{_NUMBER}\s*(?:/\s*10)?\s*\.?\s*$")
_LINE = re.compile(rf"^\s*\**\s*(?:fact|meaningful)?\s*score\s*\**\s*[:=]\s*\**\s*{_NUMBER}\s*(?:/\s*10)?\s*\**\s*\.?\s*$",
                   re.IGNORECASE)


@lru_cache(maxsize=8)
def load_prompt(metric: str, prompts_dir: str | None = None) -> str:
    """The judge prompt template for `metric` (from `prompts_dir`, default the packaged prompts); cached."""
    path = Path(prompts_dir or PROMPTS_DIR) / f"{metric}.txt"
    return path.read_text(encoding="utf-8")


def render(metric: str, req: JudgeRequest, prompts_dir: str | None = None) -> str:
    # str.replace, not str.format: answers may contain braces.
    """The `metric` prompt with the request's question, reference and prediction filled in."""
    text = load_prompt(metric, prompts_dir)
    for key, value in (("question", req.question), ("reference", req.reference), ("prediction", req.prediction)):
        text = text.replace("{" + key + "}", value)
    return text


def parse_score(reply: str) -> float:
    """The 0-10 score in a judge's reply. Accepts "7", "7/10", "Score: 7" (also as the one
    score line after reasoning) and {"score": 7}; anything else raises ValueError."""
    if not isinstance(reply, str) or not reply.strip():
        raise ValueError("empty reply")
    text = reply.strip()
    value: float | None = None
    m = _BARE.match(text)
    if m:
        value = float(m.group(1))
    elif text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"unparseable reply {text[:80]!r}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("score"), (int, float)) or isinstance(obj.get("score"), bool):
            raise ValueError(f"no numeric 'score' in {text[:80]!r}")
        value = float(obj["score"])
    else:
        found = {float(mm.group(1)) for line in text.splitlines() if (mm := _LINE.match(line))}
        if len(found) != 1:
            raise ValueError(f"expected one 'Score: N' line, got {text[:80]!r}")
        value = found.pop()
    if not 0.0 <= value <= 10.0:
        raise ValueError(f"score {value} outside 0-10")
    return value
