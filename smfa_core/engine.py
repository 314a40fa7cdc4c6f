"""The streaming engine behind `smfa sculpt`, `smfa merge` and `smfa inspect`: the entry
points, their option checks, and the run's frame (atomic output, report, cleanup).

Per tensor of the forget delta: a norms pass (block sums combined exactly), then one
fused mask/sculpt/merge pass, both over block-aligned element chunks read into reused
buffers (pipeline.py). Outputs are streamed tensor by tensor into files whose headers were
computed up front, inside a temporary sibling directory that is renamed into place only at
the end. Peak memory is a few chunks, whatever the model size. What is read and checked
before any output exists is in plan.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .atomic import AtomicOutput, cleanup_stale
from .backends import get_backend
from .errors import SmfaError
from .guard import guard_outputs
from .krules import as_rules, describe, resolve_ks
from .options import DEFAULTS, SculptOptions
from .pipeline import RunSpec, run
from .placement import Placement
from .plan import (  # noqa: F401 (the old import path of the planning helpers: CLI, tests, benchmarks)
    MAX_CHUNK_MB,
    chunk_elems,
    chunk_ranges,
    open_inputs,
    plan_items,
    progress_bar,
    tensor_sumsq,
)
from .report import Report
from .scaled import ScaledSource, check_scale
from .sources import DeltaSource, LoraSource
from .tensor_api import check_k

if TYPE_CHECKING:
    from .krules import KRule

EMITS = ("delta", "merged", "mask", "adapter")
DEFAULT_MAX_SHARD_BYTES = 5 * 2**30
_DELTA_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
                 "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def resolve_emits(emit: Sequence[str] | str | None, base: str | None) -> tuple[str, ...]:
    """The outputs to write (default: merged with a base, else delta), checked for consistency."""
    emits = (("merged",) if base else ("delta",)) if not emit else ((emit,) if isinstance(emit, str) else tuple(emit))
    for e in emits:
        if e not in EMITS:
            raise SmfaError(f"--emit must be among {', '.join(EMITS)}, got {e!r}")
    if "merged" in emits and base is None:
        raise SmfaError("--emit merged needs --base (the model to merge into)")
    if "adapter" in emits and ("merged" in emits or "delta" in emits):
        raise SmfaError("--emit adapter writes an adapter directory: combine it with mask only, not delta/merged")
    return emits


def resolve_delta_dtype(delta_dtype: str | None) -> torch.dtype | None:
    """--delta-dtype as a torch dtype (None: each tensor keeps the forget delta's dtype)."""
    if delta_dtype is None:
        return None
    out_dtype = _DELTA_DTYPES.get(delta_dtype)
    if out_dtype is None:
        raise SmfaError(f"--delta-dtype must be fp32, bf16 or fp16, got {delta_dtype!r}")
    return out_dtype


def _check_paths(inputs: dict[str, str | None], out: str, report_path: str | None, overwrite: bool) -> None:
    """No output may touch an input; a killed run's leftovers go; --out exists only with --overwrite."""
    guard_outputs(inputs, {"--out": out, "--report": report_path}, files=("--report",))
    # Leftovers of runs that were killed: their temp dirs go, a parked old output comes back.
    cleanup_stale(os.path.dirname(os.path.abspath(out)))
    if os.path.exists(out) and not overwrite:
        raise SmfaError(f"--out {out} exists; pass --overwrite to replace it")


def _prepare_sources(fsrc: DeltaSource, asrc: DeltaSource | None, pl: Placement, emits: tuple[str, ...],
                     forget: str) -> None:
    """LoRA deltas are expanded on the GPU (only their factors cross PCIe); --emit adapter needs one."""
    if pl.cuda:
        for src in (fsrc, asrc):
            if hasattr(src, "compute_on"):
                src.compute_on(pl.device)
    if "adapter" in emits and not isinstance(fsrc, LoraSource):
        raise SmfaError(f"--emit adapter needs a LoRA adapter as --forget; {forget} is a {fsrc.kind} source "
                        "(use --emit delta or --emit mask)")


def sculpt(
    forget: str,
    anchor: str | None,
    *,
    k: float | None = None,
    k_rules: Iterable[KRule | str | tuple[str, float]] | None = None,
    out: str,
    base: str | None = None,
    emit: Sequence[str] | str | None = None,
    mode: str = DEFAULTS.mode,
    eps: float = DEFAULTS.eps,
    rho_scope: str = DEFAULTS.rho_scope,
    backend: str = DEFAULTS.backend,
    chunk_mb: float = DEFAULTS.chunk_mb,
    missing_anchor: str = DEFAULTS.missing_anchor,
    scale: float = 1.0,
    forget_kind: str = "auto",
    anchor_kind: str = "auto",
    delta_dtype: str | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    overwrite: bool = False,
    report_path: str | None = None,
    progress: bool = False,
    command: str = "sculpt",
    device: str = "cpu",
    allow_nonfinite: bool = False,
    _staged: bool | None = None,
) -> Report:
    """Sculpt the forget delta against the anchor and write `emit` outputs into `out`.

    emit: any of "delta" (sculpted dense delta), "merged" (HF checkpoint: base + sculpted,
    needs `base`), "mask" (bit-packed masks), "adapter" (a masked adapter: the forget LoRA
    adapter's files + the masks, see sources.MaskedAdapterSource; needs a LoRA forget delta).
    Default: merged with a base, else delta.
    `anchor=None` merges the forget delta unmasked (the `smfa merge` command).
    `k_rules` (krules: KRule objects or 'REGEX=K' strings): a k per tensor, first fullmatch on
    its name wins, `k` for the rest (without `k`, an unmatched tensor is an error); neither
    given: k = 1. `scale`: the forget delta is read as scale·ΔW_f (`smfa merge --scale`).
    `device` ("cpu", "cuda", "cuda:1"): where the kernels run; on a GPU chunks stream through
    pinned buffers, two in flight (see placement.py); memory stays bounded by chunk_mb.
    Returns the report, also written to OUT/smfa_report.json (and report_path if given).
    A NaN or Inf in a written tensor (from the inputs, or a merge overflowing the base dtype)
    is an error naming the tensor, with nothing published, unless `allow_nonfinite`.
    """
    t0 = time.perf_counter()
    rules = as_rules(k_rules)
    if k is None and not rules:
        k = 1.0
    if k is not None:
        check_k(k)
    check_scale(scale)
    # merge (no anchor) ignores the mode: nothing is masked
    opts = SculptOptions(mode if anchor is not None else "none", eps, rho_scope, backend, chunk_mb, missing_anchor)
    emits = resolve_emits(emit, base)
    out_dtype = resolve_delta_dtype(delta_dtype)
    _check_paths({"--delta" if command == "merge" else "--forget": forget, "--anchor": anchor, "--base": base},
                 out, report_path, overwrite)
    pl = Placement(device, staged=_staged)
    be = get_backend(backend, pl.device.type)
    spec = RunSpec(emits, opts.imode, eps, rho_scope, opts.step, out_dtype, max_shard_bytes, progress,
                   allow_nonfinite)
    fsrc, asrc, base_ckpt = open_inputs(forget, anchor, base, forget_kind, anchor_kind)
    if scale != 1.0:  # 1: the source itself, so the bits are the unscaled path's
        fsrc = ScaledSource(fsrc, scale)
    try:
        _prepare_sources(fsrc, asrc, pl, emits, forget)
        items = plan_items(fsrc, asrc, base_ckpt, missing_anchor)
        ks = resolve_ks([it.name for it in items], rules, k) if rules else {}
        for it in items:
            it.k = ks.get(it.name, k)
        report = Report(
            command=command,
            options={"k": k, "mode": opts.mode, "eps": eps, "rho_scope": rho_scope, "emit": list(emits),
                     "chunk_mb": chunk_mb, "missing_anchor": missing_anchor, "device": str(pl.device),
                     **({"k_rules": describe(rules)} if rules else {}), **({"scale": scale} if scale != 1.0 else {})},
            sources={"forget": {"path": forget, "kind": fsrc.kind},
                     "anchor": None if asrc is None else {"path": anchor, "kind": asrc.kind}, "base": base},
            backend=be.NAME,
        )
        with AtomicOutput(out, overwrite=overwrite) as tmp:
            run(fsrc, asrc, base_ckpt, items, tmp, spec, be, report, pl)
            report.seconds = time.perf_counter() - t0
            report.outputs = {e: out for e in emits}
            if pl.staged:
                report.extra["staging_bytes"] = pl.staging_bytes()
            report.write_json(os.path.join(tmp, "smfa_report.json"))
        if report_path:
            report.write_json(report_path)
        return report
    finally:
        fsrc.close()
        if asrc is not None:
            asrc.close()
        if base_ckpt is not None:
            base_ckpt.close()


def merge(base: str, delta: str, *, out: str, **kw: Any) -> Report:
    """base + delta (dense, LoRA or checkpoint), out of core, as a HF checkpoint."""
    return sculpt(delta, None, base=base, out=out, emit="merged", command="merge", **kw)


