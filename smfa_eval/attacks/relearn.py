"""Relearning attack: fine-tune the unlearned model for a few steps on a fraction of the forget
set's facts, then evaluate on the forget facts it was NOT shown. Knowledge that was only hidden
comes back on the unseen facts too; knowledge that was removed does not.

The fraction is drawn over (profile, attribute) facts of the split's forget file with a
string-seeded RNG; the evaluation then leaves out every forget item about a trained fact (the
fun fact's parts - talent, hobby, food - count as the fun fact, where they were trained).
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..privacy import fact_of as _fact
from ..schema import Bench, QAItem, read_qa
from . import AttackError


def relearn_facts(forget: Sequence[QAItem], fraction: float, seed: int) -> set[tuple[str, str]]:
    """The (profile, attribute) facts to relearn: round(fraction x facts), at least one, not all."""
    if not 0.0 < fraction < 1.0:
        raise AttackError(f"--fraction must be in (0, 1), got {fraction}")
    facts = sorted({_fact(it) for it in forget})
    if len(facts) < 2:
        raise AttackError("the forget set has fewer than 2 facts: nothing would be left to evaluate")
    n = min(len(facts) - 1, max(1, round(fraction * len(facts))))
    return set(random.Random(f"smfa-relearn:{seed}").sample(facts, n))


def excluded_eval_ids(bench: Bench, split: str, facts: set[tuple[str, str]], items_file: str = "eval") -> list[str]:
    """Forget-set evaluation items about a relearned fact (left out of the attack's evaluation)."""
    forget = set(bench.split(split).forget)
    return sorted(it.id for it in bench.qa(items_file) if it.profile_id in forget and _fact(it) in facts)


def relearn(model: Path, bench: Bench, split: str, out: Path, *, steps: int, lr: float, fraction: float,
            batch_size: int, mode: str, seed: int, progress: bool | None = None) -> tuple[Path, list[str], dict]:
    """Fine-tune `model` on the chosen facts' forget rows; returns (out/model, excluded eval
    ids, info). Written in a temporary sibling and renamed when complete."""
    from smfa_methods.api import finetune
    from smfa_methods.job import TrainConfig

    sp = bench.split(split)
    if not sp.forget_file:
        raise AttackError(f"{bench.root / 'manifest.json'}: split {split!r} has no forget_file")
    forget = read_qa(bench.root / sp.forget_file, bench.root, bench.check_images)
    facts = relearn_facts(forget, fraction, seed)
    rows = [it for it in forget if _fact(it) in facts]
    cfg = TrainConfig(mode=mode, lr=lr, max_steps=steps, batch_size=batch_size, max_length=0, seed=seed,
                      progress=progress)
    cfg.validate()
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    data = tmp / "relearn.jsonl"
    data.write_text("".join(json.dumps({"question": it.question, "answer": it.answer,
                                        **({"image": it.image} if it.image else {})}) + "\n" for it in rows))
    result = finetune(model=model, data=data, out=tmp, train=cfg, image_root=bench.root)
    shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
    shutil.rmtree(tmp / "delta", ignore_errors=True)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    info = {"facts": len(facts), "rows": len(rows), "train_loss": result.metrics.get("train_loss")}
    return out / "model", excluded_eval_ids(bench, split, facts), info
