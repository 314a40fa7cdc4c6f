"""The reproduction's training calls: the two stages that make the original (pre-training on
general data, then the memorisation fine-tune), and one unlearning run of a method on a split.
Everything goes through the project's own loop (`smfa_methods.api`), as `smfa train` and
`smfa unlearn` would run it; with a preset's [launch], literally so: the step runs as that
command under the launcher, on every GPU (launch.py), and this process waits for it."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..schema import Bench
from .preset import Launch, Stage, Unlearn

if TYPE_CHECKING:
    from smfa_methods.method import TrainConfig


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


def stage_config(stage: Stage, *, seed: int, progress: bool | None) -> TrainConfig:
    """The loop settings of a training stage."""
    from smfa_methods.job import TrainConfig

    return TrainConfig(mode=stage.mode, lr=stage.lr, batch_size=stage.batch_size, max_steps=stage.max_steps,
                       scheduler="cosine", warmup_ratio=stage.warmup_ratio, min_lr_ratio=stage.min_lr_ratio,
                       weight_decay=stage.weight_decay, adam_beta2=0.98, max_length=0, logging_steps=50, seed=seed,
                       lora_r=stage.lora_r, lora_alpha=2 * stage.lora_r, progress=progress)


def train_stage(bench: Bench, model: Path, stage: Stage, out: Path, *, seed: int, progress: bool | None,
                exclude_profiles: frozenset[str] = frozenset(), launch: Launch | None = None,
                step: str = "") -> dict:
    """Train every parameter of `model` on the stage's data; the result is out/model.
    `exclude_profiles`: rows about these profiles are left out (the retrained oracle).
    `launch`: run it as `smfa train` under this launcher (`step`: its name, for errors)."""
    rows = [r for r in mix(bench, stage.data, seed) if r.get("profile_id") not in exclude_profiles]
    data = out / "train.jsonl"
    data.write_text("".join(json.dumps({k: r[k] for k in ("question", "answer", "image") if r.get(k) is not None})
                            + "\n" for r in rows), encoding="utf-8")
    cfg = stage_config(stage, seed=seed, progress=progress)
    if launch is None:
        from smfa_methods.api import finetune

        metrics = finetune(model=model, data=data, out=out, train=cfg, image_root=bench.root).metrics
        info: dict = {}
    else:
        from .launch import run_launched, train_command

        argv = train_command(launch, model=model, data=data, out=out, image_root=bench.root, cfg=cfg)
        metrics, info = run_launched(argv, launch=launch, step=step, out=out), {"launch": launch.describe()}
    for scratch in ("checkpoints", "delta"):  # the model is what later steps read
        shutil.rmtree(out / scratch, ignore_errors=True)
    return {"examples": len(rows), **metrics, **info}


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


def unlearn_config(u: Unlearn, *, lr: float, seed: int, progress: bool | None) -> TrainConfig:
    """The loop settings of an unlearning run (the budget every method shares)."""
    from smfa_methods.job import TrainConfig

    return TrainConfig(mode=u.mode, epochs=u.epochs, lr=lr, batch_size=u.batch_size, lora_r=u.lora_r,
                       lora_alpha=u.lora_alpha, bf16=u.bf16, seed=seed, max_length=0, logging_steps=10,
                       progress=progress)


def unlearn_files(bench: Bench, split: str, forget: Path | None = None,
                  retain: Path | None = None) -> tuple[Path, Path]:
    """The forget and retain files of a run: the split's, unless others are given."""
    sp = bench.split(split)
    return forget or bench.root / sp.forget_file, retain or bench.root / sp.retain_file


def unlearn_run(method: str, original: Path, bench: Bench, split: str, out: Path, u: Unlearn, *, lr: float,
                options: dict[str, Any], seed: int, progress: bool | None, forget: Path | None = None,
                retain: Path | None = None, launch: Launch | None = None, step: str = "") -> dict:
    """`smfa unlearn --method METHOD` on the split's forget file and its few-shot retain file
    (`forget`: another forget file, e.g. one sequential request's; `retain`: another retain file).
    `launch`: run it as that command under this launcher (`step`: its name, for errors), unless
    the method cannot run on several processes (launch.launches)."""
    from .launch import launches

    forget, retain = unlearn_files(bench, split, forget, retain)
    cfg = unlearn_config(u, lr=lr, seed=seed, progress=progress)
    if launch is None or not launches(method, options):
        from smfa_methods.api import unlearn

        metrics = unlearn(method, model=original, forget=forget, retain=retain, out=out, train=cfg,
                          options=options).metrics
    else:
        from .launch import run_launched, unlearn_command

        argv = unlearn_command(launch, method=method, model=original, forget=forget, retain=retain, out=out,
                               cfg=cfg, options=options)
        metrics = {**run_launched(argv, launch=launch, step=step, out=out), "launch": launch.describe()}
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return metrics
