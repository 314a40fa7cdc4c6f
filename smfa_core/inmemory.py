"""In-memory sculpting: `sculpt_model_` sculpts and merges a loaded module's weights in place.

Right after training, the deltas are already in (GPU) memory: as tensors, as PEFT LoRA
adapters on the model itself, or as files. The same contract as the streaming engine,
on each parameter's own device; temporary memory is bounded by one chunk per operand.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping

import torch

from ._ops import MODES
from .backends import get_backend
from .errors import SmfaError
from .options import DEFAULTS, SculptOptions
from .plan import chunk_ranges
from .report import Report, tensor_row
from .sources.lora_tiling import LoraModule, LoraTiles
from .tensor_api import FLOAT_DTYPES, check_k, exact_sum, rho_of, threshold

# A delta given to sculpt_model_: name -> (flat start, flat stop) -> fp32 chunk on the device.
ChunkFn = Callable[[int, int], torch.Tensor]


def _dense(t: torch.Tensor, device: torch.device) -> ChunkFn:
    flat = t.detach().reshape(-1)

    def read(s: int, e: int) -> torch.Tensor:
        return flat[s:e].to(device, non_blocking=True)

    return read


def _lora(tiles: LoraTiles, name: str, a_w: torch.Tensor, b_w: torch.Tensor, scaling: float, transposed: bool,
          shape: tuple[int, ...]) -> ChunkFn:
    """s·B@A (or its transpose) over flat ranges, expanded exactly as `smfa sculpt` expands an
    adapter directory (sources.lora_tiling: fixed row tiles, one GEMM each), so both paths give
    the same bits. The tensors returned are views into `tiles`, valid until its next read."""
    mod = LoraModule(name, "linear", "", "", a=a_w.detach().float().reshape(a_w.shape[0], -1),
                     b=b_w.detach().float().reshape(b_w.shape[0], -1), r=a_w.shape[0], scaling=scaling,
                     transposed=transposed, shape=shape)

    def read(s: int, e: int) -> torch.Tensor:
        return tiles.read(name, mod, s, e)

    return read


def _peft_deltas(model: torch.nn.Module, adapter: str) -> dict[str, tuple[torch.nn.Parameter, ChunkFn]]:
    """The LoRA adapter `adapter` of a PEFT-wrapped model, per base weight (duck-typed: no peft import)."""
    out = {}
    tiles: dict[torch.device, LoraTiles] = {}  # one expansion cache per device for this adapter
    for mname, mod in model.named_modules():
        base_layer = getattr(mod, "base_layer", None)
        if base_layer is None or not hasattr(mod, "scaling") or adapter not in getattr(mod, "scaling", {}):
            continue
        if getattr(mod, "use_dora", {}).get(adapter, False):
            raise SmfaError(f"{mname}: adapter {adapter!r} is DoRA, which smfa does not sculpt")
        weight = base_layer.weight
        s = float(mod.scaling[adapter])
        if adapter in getattr(mod, "lora_A", {}):
            a_w, b_w = mod.lora_A[adapter].weight, mod.lora_B[adapter].weight
            transposed = bool(getattr(mod, "fan_in_fan_out", False))
        elif adapter in getattr(mod, "lora_embedding_A", {}):
            a_w, b_w = mod.lora_embedding_A[adapter], mod.lora_embedding_B[adapter]
            transposed = True  # ΔW = (B@A).T for embeddings
        else:
            continue
        name = f"{mname}.base_layer.weight"
        if weight.dim() != 2:
            raise SmfaError(f"{mname}: adapter {adapter!r} is on a {weight.dim()}-d weight; sculpt_model_ expands "
                            "LoRA on linear and embedding layers (use smfa sculpt on the saved adapter)")
        dev = tiles.setdefault(a_w.device, LoraTiles(a_w.device))
        out[name] = (weight, _lora(dev, name, a_w, b_w, s, transposed, tuple(weight.shape)))
    if not out:
        raise SmfaError(f"the model has no LoRA adapter named {adapter!r}")
    return out


def _resolve(model: torch.nn.Module, delta, label: str, params: Mapping[str, torch.nn.Parameter]
             ) -> dict[str, ChunkFn]:
    if isinstance(delta, str) and not os.path.exists(delta):
        return {n: fn for n, (_, fn) in _peft_deltas(model, delta).items()}
    if isinstance(delta, (str, os.PathLike)):
        return _from_files(os.fspath(delta), label, params)
    if isinstance(delta, Mapping):
        out = {}
        for n, t in delta.items():
            name = n if n in params else _base_layer_name(n, params)
            if name is None:
                raise SmfaError(f"{label} delta: tensor {n!r} is not a parameter of the model")
            if tuple(t.shape) != tuple(params[name].shape):
                raise SmfaError(f"{label} delta: tensor {n!r} has shape {list(t.shape)}, the parameter "
                                f"{list(params[name].shape)}")
            if t.dtype not in FLOAT_DTYPES:
                raise SmfaError(f"{label} delta: tensor {n!r} has dtype {t.dtype}, not bf16/fp16/fp32")
            out[name] = _dense(t, params[name].device)
        return out
    raise SmfaError(f"{label}: expected a dict of tensors, a PEFT adapter name or a path, got {type(delta).__name__}")


def _base_layer_name(name: str, params: Mapping[str, torch.nn.Parameter]) -> str | None:
    """`x.q_proj.weight` -> `x.q_proj.base_layer.weight` on a PEFT-wrapped model, with prefixes."""
    cands = [p for p in params if p.replace(".base_layer.", ".").endswith(name)
             or name.endswith(p.replace(".base_layer.", ".").removeprefix("base_model.model."))]
    return cands[0] if len(cands) == 1 else None


def _from_files(path: str, label: str, params: Mapping[str, torch.nn.Parameter]) -> dict[str, ChunkFn]:
    from .sources import open_source

    live = {p.replace(".base_layer.", ".").removeprefix("base_model.model."): p for p in params}
    src = open_source(path, target_names=list(live), label=label)
    devices = {params[live[n]].device for n in src.names()}
    if len(devices) == 1 and next(iter(devices)).type == "cuda" and hasattr(src, "compute_on"):
        src.compute_on(next(iter(devices)))  # LoRA: expand B@A where the weights are
    out = {}
    for n in src.names():
        p = params[live[n]]

        def read(s: int, e: int, _n: str = n, _dev: torch.device = p.device) -> torch.Tensor:
            x, xb = src.read(_n, s, e)
            x32 = x.float() if xb is None else x.float() - xb.float()
            return x32.to(_dev)

        out[live[n]] = read
    return out


def _check_no_overflow(name: str, flat: torch.Tensor, ffn: ChunkFn, afn: ChunkFn | None, rule, ssf: float,
                       step: int, be) -> None:
    """SmfaError if round(W + sculpted) overflows W's dtype anywhere. |sculpted| <= ||ΔW_f||_2,
    so max|W| + ||ΔW_f||_2 below the dtype's max proves it cannot (one amax, the common case);
    otherwise the merge is computed into a scratch chunk and checked, writing nothing."""
    if float(flat.abs().max()) + math.sqrt(ssf) < torch.finfo(flat.dtype).max / 2:
        return
    _rho, t, mi = rule
    for s, e in chunk_ranges(flat.numel(), step):
        f = ffn(s, e)
        a = afn(s, e) if afn is not None and mi != MODES["none"] else f
        counts = be.sculpt_chunk(f, None, a, None, t, mi, flat[s:e], torch.empty_like(flat[s:e]), None)
        if int(counts[2]):  # non-finite values written (into the scratch chunk)
            raise SmfaError(f"tensor {name!r}: base + delta overflows {flat.dtype}; the model was not changed")


def _sumsq(fn: ChunkFn, numel: int, be, step: int, name: str, label: str) -> float:
    total = exact_sum(torch.cat([be.sumsq_blocks(fn(s, e), None) for s, e in chunk_ranges(numel, step)]))
    if not math.isfinite(total):
        raise SmfaError(f"tensor {name!r} of the {label} delta has NaN or Inf values")
    return total


def _norms(fd: dict[str, ChunkFn], ad: dict[str, ChunkFn], params: Mapping[str, torch.nn.Parameter], backend: str,
           step: int, report: Report) -> dict[str, tuple[float, float | None]]:
    """name -> (‖ΔW_f‖², ‖ΔW_a‖² or None without an anchor), on each parameter's device."""
    norms = {}
    for name, ffn in fd.items():
        p = params[name]
        if p.dtype not in FLOAT_DTYPES:
            raise SmfaError(f"parameter {name!r} has dtype {p.dtype}, not bf16/fp16/fp32")
        be = get_backend(backend, p.device.type, quiet=True)
        report.backend = be.NAME
        ssf = _sumsq(ffn, p.numel(), be, step, name, "forget")
        ssa = _sumsq(ad[name], p.numel(), be, step, name, "anchor") if name in ad else None
        norms[name] = (ssf, ssa)
    return norms


def _merge_in_place(flat: torch.Tensor, ffn: ChunkFn, afn: ChunkFn | None, t: float, mi: int, step: int,
                    be) -> tuple[int, int]:
    """W += sculpted ΔW_f, chunk by chunk (out aliases w: the kernel is elementwise); (conflict, masked)."""
    conflict = masked = 0
    for s, e in chunk_ranges(flat.numel(), step):
        f = ffn(s, e)
        a = afn(s, e) if afn is not None else f
        w = flat[s:e]
        c = be.sculpt_chunk(f, None, a, None, t, mi, w, w, None).tolist()
        conflict += int(c[0])
        masked += int(c[1])
    return conflict, masked


@torch.no_grad()
def sculpt_model_(
    model: torch.nn.Module,
    forget: Mapping[str, torch.Tensor] | str | os.PathLike[str],
    anchor: Mapping[str, torch.Tensor] | str | os.PathLike[str],
    k: float,
    *,
    mode: str = DEFAULTS.mode,
    eps: float = DEFAULTS.eps,
    rho_scope: str = DEFAULTS.rho_scope,
    backend: str = DEFAULTS.backend,
    chunk_mb: float = DEFAULTS.chunk_mb,
    missing_anchor: str = DEFAULTS.missing_anchor,
) -> Report:
    """Sculpt ΔW_f against ΔW_a and merge it into `model`'s parameters, in place.

    forget / anchor: a dict {parameter name: delta tensor}, the name of a PEFT LoRA adapter
    on `model` (its B@A·s is expanded chunk by chunk on the weight's device), or a path
    to a delta source (adapter dir, dense delta). The adapters themselves are left in
    place: unload or delete them afterwards, or the model counts their delta twice.
    Returns the same report as `smfa sculpt`.
    """
    t0 = time.perf_counter()
    check_k(k)
    opts = SculptOptions(mode, eps, rho_scope, backend, chunk_mb, missing_anchor)
    imode = opts.imode
    params = dict(model.named_parameters())
    fd = _resolve(model, forget, "forget", params)
    ad = _resolve(model, anchor, "anchor", params)
    missing = [n for n in fd if n not in ad]
    if missing and missing_anchor != "keep":
        raise SmfaError(f"tensor {missing[0]!r} of the forget delta is missing from the anchor "
                        "(missing_anchor='keep' keeps it unmasked)")
    step = opts.step
    report = Report(command="sculpt_model_", options={"k": k, "mode": mode, "eps": eps, "rho_scope": rho_scope},
                    sources={"forget": str(forget) if isinstance(forget, (str, os.PathLike)) else "tensors",
                             "anchor": str(anchor) if isinstance(anchor, (str, os.PathLike)) else "tensors"})

    norms = _norms(fd, ad, params, backend, step, report)
    if rho_scope == "global":
        g = rho_of(sum(f for f, _ in norms.values()), sum(a for _, a in norms.values() if a is not None), eps)
        report.extra["rho_global"] = g

    def rule(name: str) -> tuple[float | None, float, int]:
        ssf, ssa = norms[name]
        if ssa is None:
            return None, 0.0, MODES["none"]
        rho = rho_of(ssf, ssa, eps) if rho_scope == "tensor" else report.extra["rho_global"]
        return rho, threshold(k, rho), imode

    for name, ffn in fd.items():  # the model is changed in place: refuse an overflow before any write
        if not params[name].data.is_contiguous():
            raise SmfaError(f"parameter {name!r} is not contiguous")
        _check_no_overflow(name, params[name].data.view(-1), ffn, ad.get(name), rule(name), norms[name][0], step,
                           get_backend(backend, params[name].device.type, quiet=True))
    for name, ffn in fd.items():
        p = params[name]
        ssf, ssa = norms[name]
        rho, t, mi = rule(name)
        conflict, masked = _merge_in_place(p.data.view(-1), ffn, ad[name] if ssa is not None else None, t, mi, step,
                                           get_backend(backend, p.device.type, quiet=True))
        report.tensors.append(tensor_row(name, tuple(p.shape), p.numel(), ss_f=ssf, ss_a=ssa, rho=rho, k=k, t=t,
                                         conflict=conflict, masked=masked,
                                         anchor="present" if ssa is not None else "missing (kept)"))
    report.seconds = time.perf_counter() - t0
    return report
