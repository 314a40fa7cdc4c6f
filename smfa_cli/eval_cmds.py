"""`smfa bench build|run`, `smfa eval`, `smfa report`: thin wrappers over smfa_eval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .errors import user_errors
from .methods_cmds import _train_config, _train_options, echo_broken, parse_sets
from .params import K


@click.group("bench")
def bench() -> None:
    """The S-MLLMUn-style benchmark data."""


@bench.command("build")
@click.option("--profiles", "n_profiles", type=click.IntRange(min=2), default=1000, show_default=True,
              help="Number of synthetic profiles.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Same seed, byte-identical output.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output directory.")
@click.option("--general-images", type=click.IntRange(min=0), default=None,
              help="Extra images for visual-understanding training [default: 2 x profiles].")
@click.option("--image-size", type=click.IntRange(min=64, max=1024), default=128, show_default=True)
@click.option("--rewordings", type=click.IntRange(min=0, max=6), default=0, show_default=True,
              help="Also write reworded.jsonl: this many training rewordings per fact and understanding "
                   "question, disjoint from the evaluation's wordings.")
@click.option("--pretrain-people", type=click.IntRange(min=0, max=5000), default=0, show_default=True,
              help="Also write pretrain.jsonl: QA about this many people in no split, in many wordings.")
@click.option("--unseen-images", type=click.IntRange(min=0), default=None,
              help="Images in no training set for the unseen-image evaluation [default: general images / 8, "
                   "at least 2].")
@click.option("--holdout", type=click.IntRange(min=0, max=5000), default=0, show_default=True,
              help="Also write holdout profiles in no fine-tuning set: the non-members of membership "
                   "inference (docs/privacy.md).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out.")
def build_cmd(n_profiles: int, seed: int, out: Path, general_images: int | None, image_size: int,
              rewordings: int, pretrain_people: int, unseen_images: int | None, holdout: int,
              overwrite: bool) -> None:
    """Generate profiles, images, fine-tuning/unlearning/evaluation sets into OUT."""
    from tqdm import tqdm

    from smfa_eval.build import build

    total = 2 * n_profiles + 2 * pretrain_people + 2 * holdout + (2 * n_profiles if general_images is None else general_images)
    try:
        with tqdm(total=total, desc="images", unit="img", disable=None) as bar:
            manifest = build(out, profiles=n_profiles, seed=seed, general_images=general_images,
                             image_size=image_size, overwrite=overwrite, progress=bar.update,
                             rewordings=rewordings, pretrain_people=pretrain_people, unseen_images=unseen_images,
                             holdout=holdout)
    except (FileExistsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    sizes = ", ".join(f"{k} {len(v.forget)}+{len(v.retain_fewshot)}" for k, v in manifest.splits.items())
    held = f", {len(manifest.holdout)} holdout" if manifest.holdout else ""
    click.echo(f"wrote {out}: {n_profiles} profiles{held}, schema {manifest.schema_version}; "
               f"splits (forget+retain): {sizes}")


def _parse_opts(pairs: tuple[str, ...], config: Path | None) -> dict:
    opts: dict = {}
    if config is not None:
        try:
            opts.update(json.loads(config.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise click.ClickException(f"{config}: {exc}") from None
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.ClickException(f"--judge-opt {pair!r}: expected KEY=VALUE")
        try:
            opts[key] = json.loads(value)
        except json.JSONDecodeError:
            opts[key] = value
    return opts


def _judge_options(f):
    """--judge, --judge-opt, --judge-config (smfa eval, smfa bench run)."""
    opts = [
        click.option("--judge", "judge_name", default="heuristic", show_default=True,
                     help="Judge plugin: heuristic (offline), openai, hf, or one a plugin registers."),
        click.option("--judge-opt", multiple=True, metavar="KEY=VALUE",
                     help="Judge option (JSON values allowed); repeatable."),
        click.option("--judge-config", type=click.Path(dir_okay=False, path_type=Path),
                     help="JSON file of judge options."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _judge(judge_name: str, judge_opt: tuple[str, ...], judge_config: Path | None):
    """(judge, its options) from the flags of _judge_options; a bad judge is a user error."""
    from smfa_eval.judges import JudgeError, get_judge

    opts = _parse_opts(judge_opt, judge_config)
    try:
        return get_judge(judge_name, **opts), opts
    except JudgeError as exc:
        raise click.ClickException(str(exc)) from None


@bench.command("run")
@click.option("--model", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The fine-tuned model to unlearn from (local checkpoint dir).")
@click.option("--data", type=click.Path(file_okay=False), required=True, help="Benchmark directory.")
@click.option("--split", default="forget10", show_default=True, help="Split name from the manifest.")
@click.option("--method", "methods", multiple=True, help="Unlearning method (repeatable; see `smfa methods`).")
@click.option("--set", "sets", multiple=True, metavar="METHOD.KEY=VALUE",
              help="Method option, e.g. smfa.k=1.5 (repeatable).")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also evaluate --model itself (the 'vanilla' row).")
@_judge_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run directory.")
@click.option("--eval-batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N eval items per (set, task).")
@click.option("--overwrite", is_flag=True, help="Discard everything in --out first instead of resuming.")
@click.option("--sequential", type=click.IntRange(min=1), default=None, metavar="N",
              help="Split the forget profiles into N requests applied one after another, evaluating after each "
                   "(report/sequential.md).")
@click.option("--sequential-forget", type=click.Choice(["request", "cumulative"]), default="request",
              show_default=True, help="With --sequential: forget each request's profiles, or all requested so far.")
@click.option("--privacy", is_flag=True, help="Also MCQ, truth ratio, MIA AUCs, over-refusal, utility (docs/privacy.md).")
@click.option("--oracle-model", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A retrained oracle (never saw the split's forget profiles): a row, and forget quality's reference.")
@click.option("--oracle-base", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Train the oracle here: fine-tune this base (what --model was fine-tuned from) on the "
                   "benchmark's training rows minus the forget profiles.")
@click.option("--attack", "attacks", multiple=True, type=click.Choice(["relearn", "int8", "int4", "perturb"]),
              help="Also attack each method's model (smfa attack's defaults); rows METHOD+ATTACK. Repeatable.")
@click.option("--oracle-steps", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--oracle-lr", type=float, default=1e-3, show_default=True)
@click.option("--oracle-batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@_train_options
@user_errors
def run_cmd(model: Path, data: str, split: str, methods: tuple[str, ...], sets: tuple[str, ...], baseline: bool,
            judge_name: str, judge_opt: tuple[str, ...], judge_config: Path | None, out: Path, eval_batch_size: int,
            max_new_tokens: int, limit: int | None, overwrite: bool, sequential: int | None, sequential_forget: str,
            privacy: bool, oracle_model: Path | None, oracle_base: Path | None, attacks: tuple[str, ...],
            oracle_steps: int, oracle_lr: float, oracle_batch_size: int, **train_kw: Any) -> None:
    """Unlearn MODEL with each METHOD on a split, evaluate them all, write OUT/report (resumable)."""
    import shutil

    from smfa_core.guard import guard_outputs
    from smfa_eval.attacks import AttackError
    from smfa_eval.evaluate import RunMismatch
    from smfa_eval.generate import GenerationError
    from smfa_eval.judges import JudgeError
    from smfa_eval.run import run_benchmark
    from smfa_eval.schema import BenchDataError
    from smfa_methods.errors import MethodError

    guard_outputs({"--model": model, "--data": data, "--judge-config": judge_config}, {"--out": out})
    method_options = parse_sets(sets)
    judge, opts = _judge(judge_name, judge_opt, judge_config)
    from smfa_eval.oracle import oracle_train_config

    oracle_train = oracle_train_config(oracle_steps, oracle_lr, oracle_batch_size, seed=train_kw.get("seed") or 0,
                                       progress=train_kw["progress"])
    try:
        if overwrite and out.exists():
            shutil.rmtree(out)
        if sequential is not None:
            from smfa_eval.sequential import run_sequential

            md = run_sequential(data, split, model, list(methods), out, sequential, mode=sequential_forget,
                                judge=judge, judge_name=judge_name, judge_options=opts,
                                train=_train_config(train_kw), method_options=method_options,
                                batch_size=eval_batch_size, max_new_tokens=max_new_tokens, limit=limit,
                                progress=train_kw["progress"] is not False, log=lambda msg: click.echo(msg, err=True))
            click.echo(md.read_text().split("![")[0].rstrip())
            click.echo(f"\nreport: {md}")
            return
        report = run_benchmark(data, split, model, list(methods), out, judge=judge, judge_name=judge_name,
                               judge_options=opts, train=_train_config(train_kw), method_options=method_options,
                               baseline=baseline, batch_size=eval_batch_size, max_new_tokens=max_new_tokens,
                               limit=limit, progress=train_kw["progress"] is not False,
                               log=lambda msg: click.echo(msg, err=True), privacy=privacy,
                               oracle_model=oracle_model, oracle_base=oracle_base, oracle_train=oracle_train,
                               attacks=attacks)
    except (BenchDataError, JudgeError, RunMismatch, GenerationError, MethodError, AttackError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.read_text().split("## Table 2")[0].rstrip())
    click.echo(f"\nreport: {report}")


@click.command("eval")
@click.option("--model", type=click.Path(exists=True, file_okay=False), required=True, help="Local model directory.")
@click.option("--data", type=click.Path(file_okay=False), required=True, help="Benchmark directory.")
@click.option("--split", default="forget10", show_default=True, help="Split name from the manifest.")
@_judge_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run directory.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N items per (set, task).")
@click.option("--method", default=None, help="Method label for reports [default: model dir name].")
@click.option("--k", type=K, default=None, help="k label for the k-sweep figure.")
@click.option("--mode", type=click.Choice(["both", "conflict", "magnitude", "none"]), default=None,
              help="Masking mode label for the ablation table.")
@click.option("--items", "items_file", default="eval", show_default=True,
              help="Items file named in the manifest. eval: the paraphrased questions; eval_template: the "
                   "fine-tuning wordings (seen phrasing); an imported MLLMU-Bench also has eval_test.")
@click.option("--overwrite", is_flag=True, help="Discard a previous run in --out instead of resuming it.")
@click.option("--privacy", is_flag=True, help="Also MCQ, truth ratio, MIA AUCs, over-refusal, utility (docs/privacy.md).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@user_errors
def eval_cmd(model: str, data: str, split: str, judge_name: str, judge_opt: tuple[str, ...], judge_config: Path | None,
             out: Path, batch_size: int, max_new_tokens: int, limit: int | None, method: str | None, k: float | None,
             mode: str | None, items_file: str, overwrite: bool, privacy: bool, as_json: bool) -> None:
    """Generate, score and tabulate MODEL on a split; resumes an interrupted run in OUT."""
    import shutil

    from smfa_core.guard import guard_outputs
    from smfa_eval.evaluate import RunMismatch, run_eval
    from smfa_eval.generate import GenerationError
    from smfa_eval.judges import JudgeError
    from smfa_eval.schema import BenchDataError

    guard_outputs({"--model": model, "--data": data, "--judge-config": judge_config}, {"--out": out})
    judge, opts = _judge(judge_name, judge_opt, judge_config)
    try:
        if overwrite and out.exists():
            shutil.rmtree(out)
        summary = run_eval(data, split, out, judge=judge, judge_name=judge_name, judge_options=opts, model=model,
                           batch_size=batch_size, max_new_tokens=max_new_tokens, limit=limit, method=method, k=k,
                           mode=mode, items_file=items_file, privacy=privacy)
    except (BenchDataError, JudgeError, RunMismatch, GenerationError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        click.echo((out / "table1.md").read_text())
    if summary["judge_failed"]:
        click.secho(f"warning: {summary['judge_failed']} judgements failed (judge_error in {out / 'items.jsonl'}); "
                    "rerun the same command to retry them", fg="yellow", err=True)


@click.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@user_errors
def report_cmd(runs: tuple[str, ...], out: Path) -> None:
    """Combine eval RUNS (directories with summary.json) into markdown tables and figures."""
    from smfa_core.guard import guard_outputs
    from smfa_eval.report import write_report

    guard_outputs({f"run {r}": r for r in runs}, {"--out": out})
    try:
        path = write_report(list(runs), out)
    except (FileNotFoundError, KeyError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"cannot read run: {exc}") from None
    click.echo(f"wrote {path}")


def first_line(doc: str | None) -> str:
    """The first line of a docstring, '' when there is none."""
    text = (doc or "").strip()
    return text.splitlines()[0] if text else ""


@click.command("judges")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def judges_cmd(as_json: bool) -> None:
    """List judges (for `smfa eval --judge`), the plugin that registered each, and broken plugins."""
    from smfa_eval.judges import get_judge_plugins
    from smfa_methods.plugins import broken_plugins

    rows = [{"name": n, "plugin": p, "description": first_line(f.__doc__)}
            for n, (f, p) in sorted(get_judge_plugins().items())]
    if as_json:
        broken = [{"name": None, "plugin": p, "error": e} for p, e in broken_plugins().items()]
        click.echo(json.dumps(rows + broken, indent=2))
        return
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['description']}  [{r['plugin']}]")
    echo_broken()


def register(cli: click.Group) -> None:
    """Add the `bench`, `eval`, `report` and `judges` commands to `cli`."""
    cli.add_command(bench)
    cli.add_command(eval_cmd)
    cli.add_command(report_cmd)
    cli.add_command(judges_cmd)
