"""`smfa attack relearn|quantize|perturb`: try to bring forgotten memories back, then evaluate
the attacked model like any other (OUT/eval, labelled METHOD+ATTACK for `smfa report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .eval_cmds import _judge, _judge_options


def _common(f):
    opts = [
        click.option("--model", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
                     help="The (unlearned) model to attack."),
        click.option("--data", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="Benchmark directory."),
        click.option("--split", default="forget10", show_default=True, help="Split name from the manifest."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="Attack directory (attack.json, model/ or bench/, eval/)."),
        click.option("--label", default=None, help="Method name for reports [default: from the model's run.json]."),
        click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N eval items per (set, task)."),
        click.option("--max-new-tokens", type=click.IntRange(min=1), default=64, show_default=True),
        click.option("--eval-batch-size", type=click.IntRange(min=1), default=8, show_default=True),
        click.option("--privacy", is_flag=True, help="Also the likelihood metrics (MCQ, truth ratio, MIA)."),
        click.option("--oracle-eval", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
                     help="The retrained oracle's eval dir (with --privacy): adds forget quality. Implies --privacy."),
        click.option("--overwrite", is_flag=True, help="Discard a previous attack in --out first."),
    ]
    for o in reversed(opts):
        f = o(f)
    return _judge_options(f)


def _run(kind: str, params: dict, kw: dict) -> None:
    import shutil

    from smfa_eval.attacks import AttackError
    from smfa_eval.attacks.run import run_attack
    from smfa_eval.evaluate import RunMismatch
    from smfa_eval.generate import GenerationError
    from smfa_eval.judges import JudgeError
    from smfa_eval.schema import BenchDataError
    from smfa_methods.errors import MethodError

    judge, opts = _judge(kw["judge_name"], kw["judge_opt"], kw["judge_config"])
    out: Path = kw["out"]
    eval_kw = {"judge": judge, "judge_name": kw["judge_name"], "judge_options": opts, "limit": kw["limit"],
               "max_new_tokens": kw["max_new_tokens"], "batch_size": kw["eval_batch_size"],
               "privacy": kw["privacy"] or kw["oracle_eval"] is not None}
    oracle = kw["oracle_eval"]
    if oracle is not None and not (oracle / "items.jsonl").is_file():
        raise click.BadParameter(f"{oracle}: no items.jsonl (an `smfa eval` run directory?)", param_hint="--oracle-eval")
    try:
        if kw["overwrite"] and out.exists():
            shutil.rmtree(out)
        summary = run_attack(kind, kw["model"], kw["data"], kw["split"], out, params=params, eval_kw=eval_kw,
                             label=kw["label"], log=lambda m: click.echo(m, err=True))
        if oracle is not None:
            from smfa_eval.privacy import add_forget_quality

            click.echo(f"forget quality vs {oracle}: {add_forget_quality(out / 'eval', oracle)}", err=True)
    except (AttackError, BenchDataError, JudgeError, RunMismatch, GenerationError, MethodError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo((out / "eval" / "table1.md").read_text())
    click.echo(f"{summary['run']['method']}: {out / 'eval'}")


@click.group("attack")
def attack() -> None:
    """Attacks on unlearning: relearn, quantize, perturb (docs/privacy.md)."""


@attack.command("relearn")
@_common
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True, help="Fine-tuning steps.")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--fraction", type=float, default=0.5, show_default=True,
              help="Share of the forget facts to relearn on; the rest are evaluated.")
@click.option("--train-batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--mode", type=click.Choice(["lora", "full", "all"]), default="full", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def relearn_cmd(steps: int, lr: float, fraction: float, train_batch_size: int, mode: str, seed: int, **kw: Any) -> None:
    """Fine-tune MODEL for a few steps on part of the forget set; evaluate on the rest."""
    _run("relearn", {"steps": steps, "lr": lr, "fraction": fraction, "batch_size": train_batch_size, "mode": mode,
                     "seed": seed}, kw)


@attack.command("quantize")
@_common
@click.option("--bits", type=click.Choice(["8", "4"]), default="4", show_default=True, help="Weight precision.")
@click.option("--group-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="int4: weights per scale / zero point.")
def quantize_cmd(bits: str, group_size: int, **kw: Any) -> None:
    """Weight-only int8 / int4 quantization of MODEL, then evaluate."""
    _run("quantize", {"bits": int(bits), "group_size": group_size}, kw)


@attack.command("perturb")
@_common
@click.option("--seed", type=int, default=0, show_default=True)
def perturb_cmd(seed: int, **kw: Any) -> None:
    """Perturbed forget images and rephrased forget questions, no retraining."""
    _run("perturb", {"seed": seed}, kw)


def register(cli: click.Group) -> None:
    """Add the `attack` group (relearn, quantize, perturb) to `cli`."""
    cli.add_command(attack)
