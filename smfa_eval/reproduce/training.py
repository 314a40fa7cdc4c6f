"""The reproduction's training calls: the two stages that make the original (pre-training on
general data, then the memorisation fine-tune), and one unlearning run of a method on a split.
Everything goes through the project's own loop (`smfa_methods.api`), as `smfa train` and
`smfa unlearn` would run it."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

from ..schema import Bench
from .preset import Stage, Unlearn


def mix(bench: Bench, sources: tuple[str, ...], seed: int) -> list[dict]:
    """The training rows of a stage: each source's rows (a seeded sample where a fraction is
    given, e.g. "general:0.25"), shuffled together."""
    rng = random.Random(f"smfa-reproduce:{seed}:mix")
    rows: list[dict] = []
    for src in sources:
        name, _, frac = src.partition(":")
        key = "reworded" if name.startswith("reworded_") else name
        if key not in bench.manifest.files:
            raise FileNotFoundError(f"{bench.root / 'manifest.json'}: no {key!r} file for data source {src!r} "
                                    "(build the benchmark with rewordings / pretrain_people)")
        with bench.path(key).open(encoding="utf-8") as fh:
            part = [json.loads(line) for line in fh if line.strip()]
        if name == "reworded_memory":
            part = [r for r in part if r.get("profile_id")]
        elif name == "reworded_general":
            part = [r for r in part if not r.get("profile_id")]
        if frac:
            part = rng.sample(part, max(1, round(len(part) * float(frac))))
        rows += part
    rng.shuffle(rows)
    return rows


def train_stage(bench: Bench, model: Path, stage: Stage, out: Path, *, seed: int, progress: bool | None,
                exclude_profiles: frozenset[str] = frozenset()) -> dict:
    """Train every parameter of `model` on the stage's data; the result is out/model.
    `exclude_profiles`: rows about these profiles are left out (the retrained oracle)."""
    from smfa_methods.api import finetune
    from smfa_methods.job import TrainConfig

    rows = [r for r in mix(bench, stage.data, seed) if r.get("profile_id") not in exclude_profiles]
    data = out / "train.jsonl"
    data.write_text("".join(json.dumps({k: r[k] for k in ("question", "answer", "image") if r.get(k) is not None})
                            + "\n" for r in rows), encoding="utf-8")
    cfg = TrainConfig(mode=stage.mode, lr=stage.lr, batch_size=stage.batch_size, max_steps=stage.max_steps,
                      scheduler="cosine", warmup_ratio=stage.warmup_ratio, min_lr_ratio=stage.min_lr_ratio,
                      weight_decay=stage.weight_decay, adam_beta2=0.98, max_length=0, logging_steps=50, seed=seed,
                      lora_r=stage.lora_r, lora_alpha=2 * stage.lora_r, progress=progress)
    result = finetune(model=model, data=data, out=out, train=cfg, image_root=bench.root)
    for scratch in ("checkpoints", "delta"):  # the model is what later steps read
        shutil.rmtree(out / scratch, ignore_errors=True)
    return {"examples": len(rows), **result.metrics}


def write_full_retain(bench: Bench, split: str, path: Path) -> Path:
    """The split's whole retain set as a JSONL file: the fine-tuning items of every profile
    not in its forget set (as MLLMU-Bench's retain_90 is the complement of forget_10; the
    public re-implementation trains on that). Image paths are written absolute, so the file
    can live outside the benchmark directory."""
    forget = set(bench.split(split).forget)
    with bench.path("finetune").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    rows = [r for r in rows if r.get("profile_id") and r["profile_id"] not in forget]
    for r in rows:
        if r.get("image"):
            r["image"] = str((bench.root / r["image"]).resolve())
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def unlearn_run(method: str, original: Path, bench: Bench, split: str, out: Path, u: Unlearn, *, lr: float,
                options: dict[str, Any], seed: int, progress: bool | None, forget: Path | None = None,
                retain: Path | None = None) -> dict:
    """`smfa unlearn --method METHOD` on the split's forget file and its few-shot retain file
    (`forget`: another forget file, e.g. one sequential request's; `retain`: another retain file)."""
    from smfa_methods.api import unlearn
    from smfa_methods.job import TrainConfig

    sp = bench.split(split)
    cfg = TrainConfig(mode=u.mode, epochs=u.epochs, lr=lr, batch_size=u.batch_size, lora_r=u.lora_r,
                      lora_alpha=u.lora_alpha, bf16=u.bf16, seed=seed, max_length=0, logging_steps=10,
                      progress=progress)
    result = unlearn(method, model=original, forget=forget or bench.root / sp.forget_file,
                     retain=retain or bench.root / sp.retain_file,
                     out=out, train=cfg, options=options)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return result.metrics

