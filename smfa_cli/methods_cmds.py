"""`smfa methods`, `smfa unlearn`, `smfa train`: parse, call smfa_methods, print."""

from __future__ import annotations

import json
from pathlib import Path

import click


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
        click.option("--lora-r", type=int, default=8, show_default=True),
        click.option("--lora-alpha", type=int, default=16, show_default=True),
        click.option("--epochs", type=float, default=1.0, show_default=True),
        click.option("--max-steps", type=int, default=-1, show_default=True, help="Overrides --epochs when > 0."),
        click.option("--lr", type=float, default=1e-4, show_default=True),
        click.option("--batch-size", type=int, default=4, show_default=True),
        click.option("--grad-accum", type=int, default=1, show_default=True,
                     help="Micro-batches per optimizer step (effective batch = batch size x this x processes)."),
        click.option("--max-length", type=int, default=1024, show_default=True,
                     help="Tokens per example, image tokens included (0: no limit). Longer prompts lose "
                          "their start; an answer is cut at its end only if it cannot fit (counted, warned)."),
        click.option("--weight-decay", type=float, default=0.0, show_default=True),
        click.option("--warmup-steps", type=int, default=0, show_default=True),
        click.option("--warmup-ratio", type=float, default=0.0, show_default=True,
                     help="Share of the steps spent warming up (when --warmup-steps is 0)."),
        click.option("--scheduler", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True,
                     help="Learning-rate schedule after warm-up; cosine decays to --min-lr-ratio x --lr."),
        click.option("--min-lr-ratio", type=float, default=0.0, show_default=True),
        click.option("--adam-beta2", type=float, default=0.999, show_default=True),
        click.option("--max-grad-norm", type=float, default=1.0, show_default=True, help="0: no clipping."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--bf16", is_flag=True, help="bf16 mixed precision (GPU, or CPU autocast)."),
        click.option("--fp16", is_flag=True, help="fp16 mixed precision (GPU only)."),
        click.option("--save-steps", type=int, default=0, show_default=True, help="Checkpoint every N steps (0: none)."),
        click.option("--logging-steps", type=int, default=10, show_default=True),
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
    from smfa_methods.method import TrainConfig
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


def parse_sets(items: tuple[str, ...]) -> dict:
    """`--set key=value`: values parse as JSON when they can (numbers, true/false), else str."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {item!r}", param_hint="--set")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _user_errors():
    from smfa_core.errors import SmfaError
    from smfa_methods.errors import MethodError

    return (MethodError, SmfaError)


def register(cli: click.Group) -> None:
    @cli.command("methods")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    def methods_cmd(as_json: bool) -> None:
        """List unlearning methods and the plugin that registered each."""
        from smfa_methods.registry import get_methods

        rows = [
            {"name": n, "description": r.method.description, "plugin": r.plugin, "options": r.method.options}
            for n, r in get_methods().items()
        ]
        if as_json:
            click.echo(json.dumps(rows, indent=2, default=str))
            return
        width = max((len(r["name"]) for r in rows), default=4)
        for r in rows:
            click.echo(f"{r['name']:<{width}}  {r['description']}  [{r['plugin']}]")

    @cli.command("unlearn")
    @click.option("--method", required=True, help="Method name (see `smfa methods`).")
    @click.option("--model", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
                  help="Local transformers checkpoint dir.")
    @click.option("--forget", required=True, type=click.Path(path_type=Path), help="Forget set JSONL.")
    @click.option("--retain", required=True, type=click.Path(path_type=Path), help="Few-shot retain set JSONL.")
    @click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
    @click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Method option (repeatable).")
    @_train_options
    def unlearn_cmd(method: str, model: Path, forget: Path, retain: Path, out: Path, sets: tuple[str, ...], **kw) -> None:
        """Unlearn FORGET from MODEL with METHOD; writes OUT/model (+ deltas, run.json)."""
        from smfa_methods.api import unlearn

        try:
            result = unlearn(method, model=model, forget=forget, retain=retain, out=out,
                             train=_train_config(kw), options=parse_sets(sets))
        except _user_errors() as exc:
            raise click.ClickException(str(exc)) from None
        if result.model is not None:
            click.echo(f"{method}: model -> {result.model}")
            for k, v in result.deltas.items():
                click.echo(f"  {k} delta -> {v}")

    @cli.command("train")
    @click.option("--model", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--data", required=True, type=click.Path(path_type=Path), help="Training JSONL.")
    @click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
    @_train_options
    def train_cmd(model: Path, data: Path, out: Path, **kw) -> None:
        """Plain fine-tuning on question/answer JSONL; writes OUT/model."""
        from smfa_methods.api import finetune

        try:
            result = finetune(model=model, data=data, out=out, train=_train_config(kw))
        except _user_errors() as exc:
            raise click.ClickException(str(exc)) from None
        if result.model is not None:
            click.echo(f"train: model -> {result.model}")
