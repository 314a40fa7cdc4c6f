"""`smfa reproduce`: the paper end to end from a preset (smfa_eval.reproduce)."""

from __future__ import annotations

from pathlib import Path

import click


def _plan(preset, seed: int, out: Path, tune: bool, progress: bool | None = None) -> list[str]:
    """What a run would do, for --dry-run."""
    p, pr = preset, preset.protocol
    lines = [f"preset {p.name} ({p.source}): {p.description}", f"arch {p.arch}, seed {seed}, out {out}",
             f"bench: {p.bench}"]
    if "path" in p.model:
        from smfa_eval.reproduce.labels import model_path

        path = model_path(p)
        lines.append(f"model: local checkpoint {path}" + ("" if (path / "config.json").is_file()
                                                         else " (not found on this machine)"))
    else:
        lines.append(f"model: from scratch {p.model}")
    for name in ("pretrain", "original"):
        st = getattr(p, name)
        if st is not None:
            lines.append(f"{name}: {st.mode}, data {list(st.data)}, {st.max_steps} steps, lr {st.lr:g}, "
                         f"batch {st.batch_size}")
    lines.append(f"unlearn budget (every method): {p.unlearn}")
    for m, o in p.methods.items():
        lines.append(f"  method {m}: {o}")
    if tune:
        lines.append(f"tune on {p.tune.split}: lr {list(p.tune.lr)}, k {list(p.tune.k)}, "
                     f"manu prune_pct {list(p.tune.manu_prune_pct)}; floors retain {p.tune.retain_floor}, "
                     f"understanding {p.tune.understanding_floor}")
    else:
        lines.append(f"splits {list(pr.splits)}; ablation and k-sweep {list(pr.k_sweep)} on {pr.ablation_split}; "
                     f"eval limit {pr.eval_limit}, max_new_tokens {pr.max_new_tokens}")
    if pr.privacy:
        lines.append(f"privacy: MCQ, truth ratio, MIA, over-refusal on every split; oracle (forget quality) and "
                     f"attacks {list(pr.attacks)} on {list(pr.oracle_split_list())}")
    if p.launch is not None:
        from smfa_eval.reproduce.launch_plan import launch_plan

        lines.append(f"launch: this process orchestrates; each training step runs under {p.launch.describe()} "
                     "(batch sizes split across the processes):")
        for step, how in launch_plan(p, out, seed, progress=progress, tune=tune):
            lines.append(f"  {step}: {how}")
    return lines


def _guard(preset, out: Path, publish: Path | None) -> None:
    """The preset file and a local [model] path are inputs: no output may touch them."""
    from smfa_core.errors import SmfaError
    from smfa_core.guard import guard_outputs
    from smfa_eval.reproduce.labels import model_path

    inputs = {"--preset": preset.source, "[model] path": model_path(preset) if "path" in preset.model else None}
    try:
        # --out is a resumable run directory, written into and never replaced: it may hold the preset
        guard_outputs(inputs, {"--out": out, "--publish": publish}, run_dirs=("--out",))
    except SmfaError as exc:
        raise click.ClickException(str(exc)) from None


def register(cli: click.Group) -> None:
    """Add the `reproduce` command to `cli`."""
    @cli.command("reproduce")
    @click.option("--preset", "preset_name", default="cpu", show_default=True,
                  help="quick | cpu | paper, or a path to a preset .toml.")
    @click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=None,
                  help="Benchmark and training seed [default: the preset's test seed; with --tune its dev seed].")
    @click.option("--arch", type=click.Choice(["qwen2_5_vl", "llava_onevision"]), default=None,
                  help="Override the preset's architecture.")
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="Run directory [default: runs/reproduce-PRESET-ARCH-seedN].")
    @click.option("--split", "splits", multiple=True, type=click.Choice(["forget05", "forget10", "forget15"]),
                  help="Run only these splits (repeatable) [default: the preset's]; the ablation split must be one.")
    @click.option("--tune", is_flag=True, help="Run the hyperparameter grid (development seed only).")
    @click.option("--dry-run", is_flag=True, help="Validate the preset and print the plan; run nothing.")
    @click.option("--progress/--no-progress", default=None, help="Progress bars [default: on a terminal].")
    @click.option("--publish", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="Also copy the run's small artefacts (results.json, report, figures, run.json, the step "
                       "manifest; tune.md and selected.toml with --tune) to this directory, e.g. results/cpu-seed0.")
    def reproduce_cmd(preset_name: str, seed: int | None, arch: str | None, out: Path | None,
                      splits: tuple[str, ...], tune: bool, dry_run: bool, progress: bool | None,
                      publish: Path | None) -> None:
        """Reproduce the paper: bench -> tokenizer -> base -> pre-training -> original -> every method x
        split -> eval -> Table 1, Table 2, k-sweep, understanding by image type. Resumable: a rerun
        skips every step that finished with the same settings."""
        from smfa_eval.reproduce.launch import under_a_launcher
        from smfa_eval.reproduce.preset import PresetError, load_preset

        if under_a_launcher():  # every rank would run every step on the same directories at once
            raise click.ClickException("smfa reproduce runs as one process: start it without accelerate launch / "
                                       "torchrun; a preset's [launch] runs each training step on the GPUs itself")

        try:
            preset = load_preset(preset_name).with_arch(arch).with_splits(splits)
        except PresetError as exc:
            raise click.ClickException(str(exc)) from None
        pr = preset.protocol
        seed = (pr.dev_seed if tune else pr.test_seed) if seed is None else seed
        if tune and seed == pr.test_seed:
            raise click.ClickException(f"--tune on the test seed {seed} would tune on the numbers it reports; "
                                       f"use the preset's dev seed ({pr.dev_seed}) or another")
        out = out or Path("runs") / f"reproduce-{preset.name}-{preset.arch}-seed{seed}{'-tune' if tune else ''}"
        _guard(preset, out, publish)
        if publish is not None:
            from smfa_eval.reproduce.publish import check_dest

            try:
                check_dest(out, publish)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
        if dry_run:
            for line in _plan(preset, seed, out, tune, progress):
                click.echo(line)
            return
        if "path" in preset.model:
            from smfa_eval.reproduce.labels import model_path

            if not (model_path(preset) / "config.json").is_file():
                raise click.ClickException(f"[model] path {model_path(preset)}: no config.json (a local "
                                           "checkpoint directory is needed; nothing is downloaded)")
        from smfa_eval.schema import BenchDataError
        from smfa_methods.errors import MethodError
        from smfa_methods.progress import quiet_library_bars

        quiet_library_bars(progress)

        try:
            if tune:
                from smfa_eval.reproduce.tune import tune as run_tune

                path = run_tune(preset, out, seed, progress=progress, log=click.echo)
                click.echo(f"tuned settings -> {path} (table: {out / 'tune.md'})")
            else:
                from smfa_eval.reproduce.pipeline import Reproduction

                path = Reproduction(preset, out, seed, progress=progress, log=click.echo).run()
                click.echo(f"results -> {path}; report -> {out / 'report.md'}")
        except (MethodError, BenchDataError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from None
        if publish is not None:
            from smfa_eval.reproduce.publish import publish as copy_artefacts

            click.echo(f"published -> {copy_artefacts(out, publish)}")
