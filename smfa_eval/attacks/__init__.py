"""Attacks that try to bring forgotten memories back (`smfa attack`, docs/privacy.md):

* relearn  (relearn.py): a few fine-tuning steps on part of the forget set, evaluated on the rest;
* quantize (quantize.py): weight-only int8 / int4;
* perturb  (perturb.py): the forget images cropped, noised, rescaled and recoloured, and the
  questions rephrased again, without retraining.

Each writes OUT/attack.json (its settings: a rerun with the same ones reuses the attacked
model, other ones are an error), the attacked model (OUT/model) or benchmark (OUT/bench), and
OUT/eval: `smfa eval` of the result, labelled METHOD+ATTACK for `smfa report`.
"""

from __future__ import annotations

import json
from pathlib import Path

ATTACK_LABELS = {"relearn": "relearn", "int8": "int8", "int4": "int4", "perturb": "perturb"}


class AttackError(ValueError):
    """Bad attack input or a run directory that holds another attack."""


def method_label(model: Path) -> str:
    """The method that made `model`: `smfa unlearn`'s run.json next to it, else the directory name."""
    for info in (model / "run.json", model.parent / "run.json"):
        if info.is_file():
            try:
                m = json.loads(info.read_text()).get("method")
            except (OSError, json.JSONDecodeError):
                m = None
            if isinstance(m, str) and m and m != "finetune":
                return m
    return model.name if model.name != "model" else model.parent.name


def finished(out: Path, settings: dict) -> dict | None:
    """The recorded result when OUT holds a finished attack with these settings, None when it
    holds none; AttackError for one with other settings."""
    path = out / "attack.json"
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    have = rec.get("settings", {})
    want = json.loads(json.dumps(settings, default=str))
    if have != want:
        diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        raise AttackError(f"{out} holds an attack with other settings ({', '.join(diff)}); "
                          "use another --out or --overwrite")
    return rec.get("result", {})


def record(out: Path, settings: dict, result: dict) -> None:
    """OUT/attack.json, written last: its presence means the attacked artifact is complete."""
    tmp = out / "attack.json.tmp"
    tmp.write_text(json.dumps({"settings": settings, "result": result}, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(out / "attack.json")
