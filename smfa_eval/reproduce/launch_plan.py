"""`smfa reproduce --dry-run` with [launch]: the command line of every training step, built by
the same functions (training.stage_config / unlearn_config, launch.train_command /
unlearn_command) and with the same paths as the run itself (the ledger's temporary sibling
`.NAME.tmp` as --out, the benchmark's files as `smfa bench build` names them)."""

from __future__ import annotations

from pathlib import Path

from .launch import command_line, launches, train_command, unlearn_command
from .preset import Preset
from .training import stage_config, unlearn_config


def _tmp(out: Path, step: str) -> Path:
    """Where steps.Steps.run builds the step (renamed to OUT/STEP when it completes)."""
    final = out / step
    return final.with_name(f".{final.name}.tmp")


def _split_files(out: Path, split: str) -> tuple[Path, Path]:
    bench = out / "bench"  # build.py's names for a split's files
    return bench / f"unlearn/{split}_forget.jsonl", bench / f"unlearn/{split}_retain.jsonl"


def _stage_steps(p: Preset, out: Path, seed: int,
                 progress: bool | None) -> tuple[list[tuple[str, str]], dict[str, Path], Path]:
    """The training stages' commands, the model each stage starts from, and the original."""
    from .labels import model_path

    launch = p.launch
    assert launch is not None
    plan: list[tuple[str, str]] = []
    model = model_path(p) if "path" in p.model else out / "base"
    stage_src: dict[str, Path] = {}
    for name in ("pretrain", "original"):
        stage = getattr(p, name)
        if stage is None:
            continue
        tmp = _tmp(out, name)
        stage_src[name] = model
        plan.append((name, command_line(train_command(launch, model=model, data=tmp / "train.jsonl", out=tmp,
                                                      image_root=out / "bench",
                                                      cfg=stage_config(stage, seed=seed, progress=progress)))))
        model = out / name / "model"
    return plan, stage_src, model


def launch_plan(preset: Preset, out: Path, seed: int, *, progress: bool | None = None,
                tune: bool = False) -> list[tuple[str, str]]:
    """(step, what runs it) for every training step of the run (the main run, or the --tune
    grid): the command line under the launcher, or "in this process" where a method cannot be
    launched (launch.launches). Needs preset.launch."""
    from .labels import method_settings

    p, launch = preset, preset.launch
    assert launch is not None, "launch_plan needs a preset with [launch]"
    plan, stage_src, original = _stage_steps(p, out, seed, progress)

    def unlearn(split: str, method: str, lr: float, opts: dict, tag: str = "", retain: str = "few",
                source: Path = original, forget: Path | None = None, step: str | None = None) -> None:
        step = step or f"unlearn/{split}/{method}{tag}"
        if not launches(method, opts):
            plan.append((step, "in this process (the method does not run on several processes)"))
            return
        tmp = _tmp(out, step)
        f, r = _split_files(out, split)
        argv = unlearn_command(launch, method=method, model=source, forget=forget or f,
                               retain=tmp / "retain_full.jsonl" if retain == "full" else r, out=tmp,
                               cfg=unlearn_config(p.unlearn, lr=lr, seed=seed, progress=progress), options=opts)
        plan.append((step, command_line(argv)))

    pr = p.protocol
    if tune:
        for method in p.methods:
            base_lr, opts = method_settings(p, method)
            grid = ([(base_lr, {**opts, "prune_pct": x}, f"@prune={x:g}") for x in p.tune.manu_prune_pct]
                    if method == "manu" else [(lr, opts, f"@lr={lr:g}") for lr in p.tune.lr])
            for lr, o, tag in grid:
                unlearn(p.tune.split, method, lr, o, tag)
        return plan
    for split in pr.splits:
        for method in p.methods:
            lr, opts = method_settings(p, method)
            unlearn(split, method, lr, opts)
            if method == "smfa" and split == pr.ablation_split:
                if pr.modality_ablation:
                    unlearn(split, "smfa", lr, {**opts, "per_modality": True}, "-per_modality")
                if pr.public_variant:
                    o = {k: v for k, v in opts.items() if k != "per_modality"}
                    unlearn(split, "smfa", lr, {**o, "variant": "public"}, "-public", retain=pr.public_retain)
        if split in pr.oracle_split_list() and p.original is not None:  # the original's stage without the forget set
            tmp = _tmp(out, f"oracle/{split}")
            src = stage_src.get("original", original)
            plan.append((f"oracle/{split}", command_line(train_command(
                launch, model=src, data=tmp / "train.jsonl", out=tmp, image_root=out / "bench",
                cfg=stage_config(p.original, seed=seed, progress=progress)))))
    if pr.sequential:
        split = pr.ablation_split
        for method in pr.sequential_methods or tuple(p.methods):
            lr, opts = method_settings(p, method)
            source = original
            for i in range(1, pr.sequential + 1):
                step = f"sequential/{split}/{method}/request{i}"
                forget = out / "sequential" / split / "requests" / f"request{i}_forget.jsonl"
                unlearn(split, method, lr, opts, source=source, forget=forget, step=step)
                source = out / step / "model"
    return plan
