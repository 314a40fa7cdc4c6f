"""results.json records of the privacy evaluation (docs/privacy.md), in the reproduction's
record shape {"model", "split", "set", "task", "phrasing", "metric", "value", "seed", "k"?}.

Per (set, task) group: `mcq_acc`, `truth_ratio`. Per model, with task "all": `forget_quality`
and `mia_auc_loss|zlib|mink|minkpp` on set "forget" (forget vs holdout), `over_refusal` and
`utility` on set "retain" (what should be kept). Attacked models are named METHOD+relearn,
METHOD+int8, METHOD+int4, METHOD+perturb (`attacked_label`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..schema import TASKS

GROUP_METRICS = ("mcq_acc", "truth_ratio")
FORGET_METRICS = ("forget_quality", "mia_auc_loss", "mia_auc_zlib", "mia_auc_mink", "mia_auc_minkpp")
KEEP_METRICS = ("over_refusal", "utility")
PRIVACY_METRICS = GROUP_METRICS + FORGET_METRICS + KEEP_METRICS
ATTACK_SUFFIX = {"relearn": "relearn", "quantize_int8": "int8", "quantize_int4": "int4", "perturb": "perturb"}


def attacked_label(method: str, attack: str) -> str:
    """"smfa", "int4" -> "smfa+int4" (the model name of an attacked model's records)."""
    if attack not in ATTACK_SUFFIX.values():
        raise ValueError(f"unknown attack {attack!r}; one of {sorted(ATTACK_SUFFIX.values())}")
    return f"{method}+{attack}"


def privacy_records(summary: dict, *, model: str, split: str, phrasing: str, seed: int,
                    k: float | None = None) -> list[dict]:
    """The records of one eval run's summary.json (empty when it was run without privacy)."""
    p = summary.get("privacy")
    if not p:
        return []
    base = {"model": model, "split": split, "phrasing": phrasing, "seed": seed, **({"k": k} if k is not None else {})}
    out = []
    for s in ("forget", "retain"):
        for t in TASKS:
            g = summary["groups"].get(f"{s}/{t}", {})
            for metric in GROUP_METRICS:
                if g.get(metric) is not None:
                    out.append({**base, "set": s, "task": t, "metric": metric, "value": g[metric]})
    for metrics, s in ((FORGET_METRICS, "forget"), (KEEP_METRICS, "retain")):
        for metric in metrics:
            if p.get(metric) is not None:
                out.append({**base, "set": s, "task": "all", "metric": metric, "value": p[metric]})
    return out


def records_from_run(eval_dir: Path, **kw: Any) -> list[dict]:
    """privacy_records of eval_dir/summary.json."""
    return privacy_records(json.loads((Path(eval_dir) / "summary.json").read_text()), **kw)


def survives(before: float, after: float, original: float, share: float = 0.5) -> bool | None:
    """An unlearned model survives an attack when the attack brings back less than `share` of
    what unlearning removed (forget ROUGE-L: original -> before -> after). A method that
    removed nothing (before >= original) has nothing an attack could bring back: None (no
    verdict), so that "did not unlearn" is not reported as "the attack undid it"."""
    removed = original - before
    if removed <= 0:
        return None
    return (after - before) < share * removed
