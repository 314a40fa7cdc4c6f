"""`smfa methods`, `smfa unlearn`, `smfa train`: parse, call smfa_methods, print."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .errors import fail, user_errors
from .params import FiniteFloat


def _train_options(f):
    """The shared training-loop flags (TrainConfig)."""
    opts = [
        click.option("--lora", "mode", flag_value="lora", default=True,
                     help="Train LoRA adapters (peft) on the target linear layers [default]."),
        click.option("--full", "mode", flag_value="full",
                     help="Full fine-tuning of the target linear layers (everything else frozen)."),
        click.option("--all-params", "mode", flag_value="all",
                     help="Train every parameter: embeddings, norms, lm_head and the vision tower too "
                          "(what a model built from scratch needs)."),
        click.option("--target", default=None,
                     help="Regex (fullmatch) of linear layer names to train; default: the language model's linears."),
        click.option("--lora-r", type=click.IntRange(1, 4096), default=8, show_default=True),
        click.option("--lora-alpha", type=click.IntRange(1, 1 << 20), default=16, show_default=True),
        click.option("--epochs", type=FiniteFloat(0, 1e6, min_open=True), default=1.0, show_default=True),
        click.option("--max-steps", type=click.IntRange(-1, 10**9), default=-1, show_default=True, help="Overrides --epochs when > 0."),
        click.option("--lr", type=FiniteFloat(0, 1), default=1e-4, show_default=True),
        click.option("--batch-size", type=click.IntRange(1, 1 << 16), default=4, show_default=True),
        click.option("--grad-accum", type=click.IntRange(1, 1 << 16), default=1, show_default=True,
                     help="Micro-batches per optimizer step (effective batch = batch size x this x processes)."),
        click.option("--max-length", type=click.IntRange(0, 1 << 24), default=1024, show_default=True,
                     help="Tokens per example, image tokens included (0: no limit). Longer prompts lose "
                          "their start; an answer is cut at its end only if it cannot fit (counted, warned)."),
        click.option("--weight-decay", type=FiniteFloat(0, 1), default=0.0, show_default=True),
        click.option("--warmup-steps", type=click.IntRange(0, 10**9), default=0, show_default=True),
        click.option("--warmup-ratio", type=FiniteFloat(0, 1), default=0.0, show_default=True,
                     help="Share of the steps spent warming up (when --warmup-steps is 0)."),
        click.option("--scheduler", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True,
                     help="Learning-rate schedule after warm-up; cosine decays to --min-lr-ratio x --lr."),
        click.option("--min-lr-ratio", type=FiniteFloat(0, 1), default=0.0, show_default=True),
        click.option("--adam-beta2", type=FiniteFloat(0, 1), default=0.999, show_default=True),
        click.option("--max-grad-norm", type=FiniteFloat(0, 1e6), default=1.0, show_default=True, help="0: no clipping."),
        click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True),
        click.option("--bf16", is_flag=True, help="bf16 mixed precision (GPU, or CPU autocast)."),
        click.option("--fp16", is_flag=True, help="fp16 mixed precision (GPU only)."),
        click.option("--save-steps", type=click.IntRange(0, 10**9), default=0, show_default=True, help="Checkpoint every N steps (0: none)."),
        click.option("--logging-steps", type=click.IntRange(1, 10**9), default=10, show_default=True),
        click.option("--resume", is_flag=True, help="Resume from the newest checkpoint under OUT/checkpoints."),
        click.option("--report-to", default="none", show_default=True,
                     help="Trainer logging integrations (e.g. tensorboard, wandb; 'none')."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bar with loss and ETA (default: when stderr is a terminal); otherwise "
                          "a plain line every --logging-steps steps."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _train_config(kw: dict):
    from smfa_methods.job import TrainConfig
    from smfa_methods.progress import quiet_library_bars

    quiet_library_bars(kw["progress"])

    return TrainConfig(
        mode=kw["mode"], target=kw["target"], lora_r=kw["lora_r"],
        lora_alpha=kw["lora_alpha"], epochs=kw["epochs"], max_steps=kw["max_steps"], lr=kw["lr"],
        batch_size=kw["batch_size"], grad_accum=kw["grad_accum"], max_length=kw["max_length"],
        weight_decay=kw["weight_decay"], warmup_steps=kw["warmup_steps"], warmup_ratio=kw["warmup_ratio"],
        scheduler=kw["scheduler"], min_lr_ratio=kw["min_lr_ratio"], adam_beta2=kw["adam_beta2"],
        max_grad_norm=kw["max_grad_norm"],
        seed=kw["seed"], bf16=kw["bf16"], fp16=kw["fp16"], save_steps=kw["save_steps"],
        logging_steps=kw["logging_steps"], resume=kw["resume"], report_to=kw["report_to"],
        progress=kw["progress"],
    )


def parse_sets(items: tuple[str, ...], method: str | None = None) -> dict[str, dict[str, str]]:
    """`--set METHOD.KEY=VALUE` (`smfa unlearn` and `smfa bench run` alike) -> {method: {key:
    raw value}}; each method types the values by its options' defaults (smfa_methods.options).
    With `method` (unlearn's --method) the `METHOD.` prefix may be left out."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        meth, dot, opt = key.partition(".")
        if not dot and method is not None:
            meth, opt = method, key
        if not sep or not meth or not opt:
            raise click.BadParameter(f"expected METHOD.KEY=VALUE, got {item!r}", param_hint="--set")
        if method is not None and meth != method:
            raise click.BadParameter(f"--set {item} is for method {meth!r}, not --method {method!r}",
                                     param_hint="--set")
        out.setdefault(meth, {})[opt] = raw
    return out


def echo_broken() -> None:
    """The plugins that failed, with their errors (after a listing)."""
    from smfa_methods.plugins import broken_plugins

    for plugin, error in broken_plugins().items():
        click.echo(f"broken plugin {plugin}: {error}")


def _user_errors():
    from smfa_core.errors import SmfaError
    from smfa_methods.errors import MethodError

    return (MethodError, SmfaError)


def register(cli: click.Group) -> None:
    """Add the `methods`, `unlearn` and `train` commands to `cli`."""
    @cli.command("methods")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @click.option("--verbose", "-v", is_flag=True,
                  help="Loss, reference model, paper and each option (type, range, default, help).")
    def methods_cmd(as_json: bool, verbose: bool) -> None:
        """List unlearning methods, the plugin that registered each, and broken plugins."""
        from smfa_methods.catalog import method_rows, verbose_text
        from smfa_methods.plugins import broken_plugins

        rows = method_rows()
        if as_json:
            broken = [{"name": None, "plugin": p, "error": e} for p, e in broken_plugins().items()]
            click.echo(json.dumps(rows + broken, indent=2, default=str))
            return
        if verbose:
            click.echo(verbose_text(rows), nl=False)
        else:
            width = max((len(r["name"]) for r in rows), default=4)
            for r in rows:
                click.echo(f"{r['name']:<{width}}  {r['description']}  [{r['plugin']}]")
        echo_broken()

    @cli.command("unlearn")
    @click.option("--method", required=True, help="Method name (see `smfa methods`).")
    @click.option("--model", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
                  help="Local transformers checkpoint dir.")
    @click.option("--forget", required=True, type=click.Path(path_type=Path), help="Forget set JSONL.")
    @click.option("--retain", required=True, type=click.Path(path_type=Path), help="Few-shot retain set JSONL.")
    @click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
    @click.option("--set", "sets", multiple=True, metavar="METHOD.KEY=VALUE",
                  help="Method option, e.g. smfa.k=1.5 (the METHOD. prefix is optional here; repeatable).")
    @_train_options
    @user_errors
    def unlearn_cmd(method: str, model: Path, forget: Path, retain: Path, out: Path, sets: tuple[str, ...], **kw) -> None:
        """Unlearn FORGET from MODEL with METHOD; writes OUT/model (+ deltas, run.json)."""
        from smfa_methods.api import unlearn

        try:
            result = unlearn(method, model=model, forget=forget, retain=retain, out=out,
                             train=_train_config(kw), options=parse_sets(sets, method).get(method, {}))
        except _user_errors() as exc:
            raise fail(exc) from None
        if result.model is not None:
            click.echo(f"{method}: model -> {result.model}")
            for k, v in result.deltas.items():
                click.echo(f"  {k} delta -> {v}")

    @cli.command("train")
    @click.option("--model", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--data", required=True, type=click.Path(path_type=Path), help="Training JSONL.")
    @click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
    @click.option("--image-root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
                  help="Where DATA's relative image paths start [default: the benchmark directory above DATA, "
                       "else DATA's own directory].")
    @_train_options
    @user_errors
    def train_cmd(model: Path, data: Path, out: Path, image_root: Path | None, **kw) -> None:
        """Plain fine-tuning on question/answer JSONL; writes OUT/model."""
        from smfa_methods.api import finetune

        try:
            result = finetune(model=model, data=data, out=out, train=_train_config(kw), image_root=image_root)
        except _user_errors() as exc:
            raise fail(exc) from None
        if result.model is not None:
            click.echo(f"train: model -> {result.model}")
