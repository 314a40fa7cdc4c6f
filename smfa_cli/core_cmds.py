"""smfa sculpt / merge / inspect / kernels: thin wrappers over smfa_core."""

from __future__ import annotations

import json
import sys

import click

from smfa_core.options import DEFAULTS

from .errors import user_errors
from .krule_opts import collect_rules, k_rule_options
from .params import CHUNK_MB, EPS, K, KSweep

KINDS = click.Choice(["auto", "delta", "lora", "masked-adapter", "checkpoint"])
BACKENDS = click.Choice(["auto", "cpu", "cuda", "triton", "reference"])
ALLOW_NONFINITE_HELP = ("Write the output even if a tensor holds NaN or Inf (default: refuse, naming the "
                        "tensor, and publish nothing).")


def _common(fn):
    opts = [
        click.option("--eps", type=EPS, default=DEFAULTS.eps, show_default=True, help="ε in ρ = ‖ΔW_f‖/(‖ΔW_a‖+ε)."),
        click.option("--rho-scope", type=click.Choice(["tensor", "global"]), default=DEFAULTS.rho_scope, show_default=True,
                     help="ρ per tensor, or one ρ from the norms of all tensors."),
        click.option("--backend", type=BACKENDS, default=DEFAULTS.backend, show_default=True, help="Kernel backend."),
        click.option("--chunk-mb", type=CHUNK_MB, default=DEFAULTS.chunk_mb, show_default=True,
                     help="Chunk size (fp32-equivalent MiB): bounds memory, whatever the model size."),
        click.option("--missing-anchor", type=click.Choice(["error", "keep"]), default=DEFAULTS.missing_anchor, show_default=True,
                     help="A forget tensor absent from the anchor: error, or keep it unmasked."),
        click.option("--forget-kind", type=KINDS, default="auto", show_default=True),
        click.option("--anchor-kind", type=KINDS, default="auto", show_default=True),
        click.option("--device", default="cpu", show_default=True,
                     help="Where the kernels run: cpu, cuda, cuda:N (chunks stream through pinned buffers)."),
        click.option("--base", type=click.Path(), default=None,
                     help="Base model (HF checkpoint dir or .safetensors): needed for merged output and checkpoint deltas."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _progress_default() -> bool:
    return sys.stderr.isatty()


@click.command()
@click.option("--forget", "-f", required=True, type=click.Path(), help="ΔW_f: LoRA adapter dir, dense delta, or fine-tuned checkpoint.")
@click.option("--anchor", "-a", required=True, type=click.Path(), help="ΔW_a: the retain anchor, same kinds.")
@click.option("--k", "k", type=K, default=None,
              help="Magnitude factor k in kρ|ΔW_a| < |ΔW_f| [default: 1; with --k-rule: the k of unmatched tensors].")
@k_rule_options
@click.option("--out", "-o", required=True, type=click.Path(), help="Output directory (written atomically).")
@click.option("--emit", multiple=True, type=click.Choice(["delta", "merged", "mask", "adapter"]),
              help="What to write (repeatable): delta, merged (needs --base), mask, adapter (a LoRA forget "
                   "adapter + its masks; with mask only). Default: merged with --base, else delta.")
@click.option("--mode", type=click.Choice(["both", "conflict", "magnitude", "none"]), default=DEFAULTS.mode, show_default=True,
              help="Mask rule: C∧R (SMFA), C only, R only, or keep ΔW_f.")
@_common
@click.option("--delta-dtype", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
              help="dtype of an emitted delta (default: the forget delta's own dtype; fp32 for LoRA/checkpoints).")
@click.option("--report", "report_path", type=click.Path(), default=None, help="Also write the JSON report here.")
@click.option("--allow-nonfinite", is_flag=True, help=ALLOW_NONFINITE_HELP)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@user_errors
def sculpt(forget: str, anchor: str, k: float | None, k_rule: tuple[str, ...], k_rules_file: str | None, out: str,
           emit: tuple[str, ...], mode: str, eps: float, rho_scope: str, backend: str, chunk_mb: float,
           missing_anchor: str, forget_kind: str, anchor_kind: str, device: str, base: str | None,
           delta_dtype: str | None, report_path: str | None, allow_nonfinite: bool, overwrite: bool, as_json: bool,
           progress: bool | None) -> None:
    """Mask the entries of ΔW_f that conflict with ΔW_a and dominate it; write delta/merged/mask."""
    import smfa_core

    report = smfa_core.sculpt(
        forget, anchor, k=k, out=out, base=base, emit=list(emit) or None, mode=mode, eps=eps,
        rho_scope=rho_scope, backend=backend, chunk_mb=chunk_mb, missing_anchor=missing_anchor,
        forget_kind=forget_kind, anchor_kind=anchor_kind, delta_dtype=delta_dtype, overwrite=overwrite,
        report_path=report_path, progress=_progress_default() if progress is None else progress, device=device,
        k_rules=collect_rules(k_rule, k_rules_file),
        allow_nonfinite=allow_nonfinite,
    )
    click.echo(json.dumps(report.as_dict(), indent=1) if as_json else report.summary())
    if not as_json:
        click.echo(f"wrote {', '.join(report.options['emit'])} to {out}")


@click.command()
@click.option("--base", required=True, type=click.Path(), help="Base model (HF checkpoint dir or .safetensors).")
@click.option("--delta", "-d", required=True, type=click.Path(), help="Delta: dense, LoRA adapter, or fine-tuned checkpoint.")
@click.option("--out", "-o", required=True, type=click.Path())
@click.option("--delta-kind", type=KINDS, default="auto", show_default=True)
@click.option("--scale", type=float, default=1.0, show_default=True,
              help="Merge W + scale·ΔW (e.g. -1 to subtract a task vector).")
@click.option("--backend", type=BACKENDS, default=DEFAULTS.backend, show_default=True)
@click.option("--chunk-mb", type=CHUNK_MB, default=DEFAULTS.chunk_mb, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--allow-nonfinite", is_flag=True, help=ALLOW_NONFINITE_HELP)
@click.option("--overwrite", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--progress/--no-progress", default=None)
@user_errors
def merge(base: str, delta: str, out: str, delta_kind: str, scale: float, backend: str, chunk_mb: float, device: str,
          allow_nonfinite: bool, overwrite: bool, as_json: bool, progress: bool | None) -> None:
    """Merge any delta into a base model, out of core: W + ΔW, one rounding."""
    import smfa_core

    report = smfa_core.merge(base, delta, out=out, forget_kind=delta_kind, backend=backend, chunk_mb=chunk_mb,
                             overwrite=overwrite, progress=_progress_default() if progress is None else progress,
                             device=device, scale=scale, allow_nonfinite=allow_nonfinite)
    click.echo(json.dumps(report.as_dict(), indent=1) if as_json else
               f"merged {len(report.tensors)} tensors into {out} in {report.seconds:.1f}s")


@click.command()
@click.option("--forget", "-f", required=True, type=click.Path())
@click.option("--anchor", "-a", required=True, type=click.Path())
@click.option("--k-sweep", "ks", type=KSweep(), default="0:10:0.25", show_default=True,
              help="START:STOP:STEP (inclusive) or k1,k2,... (at most 5000 values).")
@click.option("--sweep-group", default=None, metavar="REGEX",
              help="Sweep only the tensors whose name fully matches REGEX; the others keep their --k-rule/--k k.")
@click.option("--k", "k", type=K, default=None, help="With --sweep-group: k of the tensors not swept.")
@k_rule_options
@_common
@click.option("--plot", type=click.Path(), default=None, help="Write a Fig. 4-style PNG here.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@click.option("--out-json", type=click.Path(), default=None, help="Also write the JSON here.")
@click.option("--progress/--no-progress", default=None)
@user_errors
def inspect(forget: str, anchor: str, ks: list[float], sweep_group: str | None, k: float | None,
            k_rule: tuple[str, ...], k_rules_file: str | None, eps: float, rho_scope: str, backend: str, chunk_mb: float,
            missing_anchor: str, forget_kind: str, anchor_kind: str, device: str, base: str | None,
            plot: str | None, as_json: bool, out_json: str | None, progress: bool | None) -> None:
    """Masked fraction for every k in one pass (per layer and overall)."""
    from smfa_core.guard import guard_outputs
    from smfa_core.report import write_json_file
    from smfa_core.sweep import inspect as run_inspect
    from smfa_core.sweep import plot_sweep

    guard_outputs({"--forget": forget, "--anchor": anchor, "--base": base},
                  {"--out-json": out_json, "--plot": plot}, files=("--out-json", "--plot"))
    res = run_inspect(forget, anchor, ks=ks, base=base, eps=eps, rho_scope=rho_scope, backend=backend,
                      chunk_mb=chunk_mb, missing_anchor=missing_anchor, forget_kind=forget_kind,
                      anchor_kind=anchor_kind, progress=_progress_default() if progress is None else progress,
                      device=device, sweep_group=sweep_group, k_rules=collect_rules(k_rule, k_rules_file), k=k)
    if out_json:
        write_json_file(out_json, res)
    if plot:
        plot_sweep(res, plot)
    if as_json:
        click.echo(json.dumps(res, indent=1))
        return
    show = [i for i in range(len(ks))] if len(ks) <= 9 else sorted({round(j * (len(ks) - 1) / 8) for j in range(9)})
    header = f"{'layer':<14}" + "".join(f"{'k=' + format(ks[i], 'g'):>10}" for i in show)
    lines = [header]
    for name, agg in list(res["layers"].items()) + [("overall", res["overall"])]:
        lines.append(f"{name:<14}" + "".join(f"{100 * agg['masked_frac'][i]:>9.3f}%" for i in show))
    click.echo("\n".join(lines))
    if plot:
        click.echo(f"plot: {plot}")


@click.group()
def kernels() -> None:
    """Kernel backends: list them, benchmark them."""


@kernels.command("list")
@click.option("--json", "as_json", is_flag=True)
def kernels_list(as_json: bool) -> None:
    """Which backends are available here, and why not."""
    import smfa_core

    av = smfa_core.available_backends()
    click.echo(json.dumps(av, indent=1) if as_json else "\n".join(f"{k:<10} {v}" for k, v in av.items()))


@kernels.command("bench")
@click.option("--numel", type=click.IntRange(1, 2**31), default=16 * 2**20, show_default=True)
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default="bf16", show_default=True)
@click.option("--backend", type=BACKENDS, default=DEFAULTS.backend, show_default=True)
@click.option("--repeat", type=click.IntRange(1, 1000), default=5, show_default=True)
@user_errors
def kernels_bench(numel: int, dtype: str, backend: str, repeat: int) -> None:
    """Time sculpt_tensor against a torch copy of the same bytes."""
    import time

    import torch

    import smfa_core

    dt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    g = torch.Generator().manual_seed(0)
    f = torch.randn(numel, generator=g).to(dt)
    a = torch.randn(numel, generator=g).to(dt)
    src = torch.empty(numel * dt.itemsize * 5 // 2, dtype=torch.uint8)  # 10 bytes/elem for bf16 moved by copy
    dst = torch.empty_like(src)

    def best(fn):
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    t_s = best(lambda: smfa_core.sculpt_tensor(f, a, 1.0, backend=backend))
    t_c = best(lambda: dst.copy_(src))
    be = smfa_core.get_backend(backend, "cpu", quiet=True).NAME
    click.echo(f"backend {be}: {numel / t_s / 1e9:.2f} G elem/s; {t_c / t_s:.2f}x the copy of the same bytes")


def register(cli: click.Group) -> None:
    """Add sculpt, merge, inspect and the kernels group to `cli`."""
    for cmd in (sculpt, merge, inspect, kernels):
        cli.add_command(cmd)
