"""MANU (App. C): per-neuron importance on D_f and D_r^few, score S_n = I(D_f,n) /
(I(D_r,n) + ε), prune the top α % neurons per modality by zeroing their weights. No training.

A neuron is one intermediate unit of an MLP block (an input feature of its down projection,
`down_proj` or `fc2`), in every language-model and vision-tower MLP layer. Statistics are
collected per layer (every layer, not pooled into a few). Importance functions per neuron,
over the non-padding token positions (all patch positions for vision):
  I_abs  = E|a|                      mean activation magnitude
  I_freq = P(|a| > τ·mean_m|a_m|)    how often it deviates clearly from zero, relative to the
                                     layer's mean magnitude at the same position
  I_var  = Var(a)
  I_rms  = sqrt(E[a²]) / mean_m sqrt(E[a_m²])   strength relative to the layer
I = Σ_k I_k / c_k, where c_k is the layer mean of I_k over D_f ∪ D_r^few: one normaliser
for both sets (so the ratio S_n is unchanged in meaning) that keeps the four terms on a
comparable scale instead of letting the variance (activation²) dominate.
Pruning zeroes the neuron's row in gate/up (fc1, and its bias) and its column in down (fc2).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..collators import SFTCollator
from ..data import Example
from ..job import Job, Result
from ..method import Method
from ..options import Option

_DOWN = ("down_proj", "fc2")
_IN = ("gate_proj", "up_proj", "fc1")


@dataclass
class MLPLayer:
    name: str
    modality: str  # "language" | "vision"
    module: torch.nn.Module

    @property
    def down(self) -> torch.nn.Linear:
        return next(getattr(self.module, n) for n in _DOWN if hasattr(self.module, n))

    @property
    def inputs(self) -> list[torch.nn.Linear]:
        return [getattr(self.module, n) for n in _IN if isinstance(getattr(self.module, n, None), torch.nn.Linear)]


def mlp_layers(model: torch.nn.Module) -> list[MLPLayer]:
    """Every transformer MLP block (class name contains "MLP" and has a down projection)."""
    out = []
    for name, mod in model.named_modules():
        if "MLP" not in type(mod).__name__ or not any(isinstance(getattr(mod, n, None), torch.nn.Linear) for n in _DOWN):
            continue
        modality = "vision" if any(t in name for t in ("vision", "visual")) else "language"
        out.append(MLPLayer(name, modality, mod))
    return out


class _Stats:
    """Streaming per-neuron sums over positions."""

    def __init__(self, n: int, tau: float):
        self.tau = tau
        self.count = 0
        self.abs = torch.zeros(n, dtype=torch.float64)
        self.sum = torch.zeros(n, dtype=torch.float64)
        self.sq = torch.zeros(n, dtype=torch.float64)
        self.freq = torch.zeros(n, dtype=torch.float64)

    def add(self, a: torch.Tensor) -> None:  # a: (positions, n)
        a = a.detach().double()
        mag = a.abs()
        self.count += a.shape[0]
        self.abs += mag.sum(0)
        self.sum += a.sum(0)
        self.sq += (a * a).sum(0)
        self.freq += (mag > self.tau * mag.mean(-1, keepdim=True)).double().sum(0)

    def importances(self) -> dict[str, torch.Tensor]:
        c = max(self.count, 1)
        mean, ms = self.sum / c, self.sq / c
        rms = ms.sqrt()
        return {
            "abs": self.abs / c,
            "freq": self.freq / c,
            "var": (ms - mean * mean).clamp(min=0),
            "rms": rms / rms.mean().clamp(min=1e-30),
        }


@torch.no_grad()
def collect_stats(
    model: torch.nn.Module, layers: Sequence[MLPLayer], batches: Iterable[dict[str, torch.Tensor]], tau: float
) -> dict[str, _Stats]:
    """Forward `batches` and accumulate each MLP neuron's activation statistics at its down projection."""
    stats: dict[str, _Stats] = {}
    mask_holder: dict[str, torch.Tensor | None] = {"mask": None}

    def hook_for(layer: MLPLayer):
        def hook(_mod, args):
            a = args[0]
            m = mask_holder["mask"]
            if layer.modality == "language" and m is not None and a.dim() == 3 and a.shape[:2] == m.shape:
                a = a[m.bool()]
            else:
                a = a.reshape(-1, a.shape[-1])
            if layer.name not in stats:
                stats[layer.name] = _Stats(a.shape[-1], tau)
            stats[layer.name].add(a)

        return hook

    handles = [layer.down.register_forward_pre_hook(hook_for(layer)) for layer in layers]
    try:
        for batch in batches:
            mask_holder["mask"] = batch.get("attention_mask")
            model(**{k: v for k, v in batch.items() if k != "labels"})
    finally:
        for h in handles:
            h.remove()
    return stats


def neuron_scores(stats_f: dict[str, _Stats], stats_r: dict[str, _Stats], eps: float) -> dict[str, torch.Tensor]:
    """S_n = I(D_f, n) / (I(D_r, n) + ε) for every layer seen on both sets."""
    scores = {}
    for name, sf in stats_f.items():
        if name not in stats_r:
            continue  # e.g. vision layers when D_r^few has no images
        i_f, i_r = sf.importances(), stats_r[name].importances()
        tot_f = torch.zeros_like(sf.abs)
        tot_r = torch.zeros_like(sf.abs)
        for k in i_f:
            norm = ((i_f[k].mean() + i_r[k].mean()) / 2).clamp(min=1e-30)
            tot_f += i_f[k] / norm
            tot_r += i_r[k] / norm
        scores[name] = tot_f / (tot_r + eps)
    return scores


def select_neurons(
    scores: dict[str, torch.Tensor], modality: dict[str, str], pct: float, scope: str = "modality"
) -> dict[str, list[int]]:
    """Top `pct` % of scores, ranked within each modality across its layers ("modality") or
    within each layer ("layer")."""
    groups: dict[str, list[str]] = {}
    for name in scores:
        groups.setdefault(modality[name] if scope == "modality" else name, []).append(name)
    chosen: dict[str, list[int]] = {n: [] for n in scores}
    for names in groups.values():
        flat = torch.cat([scores[n] for n in names])
        k = int(round(flat.numel() * pct / 100.0))
        if k == 0:
            continue
        top = torch.topk(flat, k).indices
        offsets = torch.tensor([0] + [scores[n].numel() for n in names]).cumsum(0)
        for idx in top.tolist():
            j = int(torch.searchsorted(offsets, idx, right=True)) - 1
            chosen[names[j]].append(idx - int(offsets[j]))
    return {n: sorted(v) for n, v in chosen.items() if v}


@torch.no_grad()
def prune(layers: Sequence[MLPLayer], chosen: dict[str, list[int]]) -> None:
    """Zero every weight of the chosen neurons: their rows in gate/up/fc1 (+bias) and their
    columns in down/fc2."""
    by_name = {layer.name: layer for layer in layers}
    for name, idx in chosen.items():
        layer, ix = by_name[name], torch.tensor(idx, dtype=torch.long)
        for lin in layer.inputs:
            lin.weight[ix] = 0
            if lin.bias is not None:
                lin.bias[ix] = 0
        layer.down.weight[:, ix] = 0


def manu_prune(
    model: torch.nn.Module, processor: Any, forget: Sequence[Example], retain: Sequence[Example], *,
    prune_pct: float = 5.0, scope: str = "modality", eps: float = 1e-8, freq_tau: float = 0.5, batch_size: int = 8,
    max_length: int | None = None,
) -> dict[str, list[int]]:
    """Score every MLP neuron on D_f vs D_r^few and zero the top `prune_pct` % in place;
    returns {layer name: pruned neuron indices}."""
    model.eval()
    layers = mlp_layers(model)
    coll = SFTCollator(processor, max_length=max_length)

    def batches(exs):
        for i in range(0, len(exs), batch_size):
            yield coll.encode_batch(exs[i: i + batch_size])

    stats_f = collect_stats(model, layers, batches(list(forget)), freq_tau)
    stats_r = collect_stats(model, layers, batches(list(retain)), freq_tau)
    scores = neuron_scores(stats_f, stats_r, eps)
    chosen = select_neurons(scores, {layer.name: layer.modality for layer in layers}, prune_pct, scope)
    prune(layers, chosen)
    return chosen


class MANU(Method):
    name = "manu"
    description = "MANU (App. C): prune the top-α% MLP neurons by forget/retain importance ratio, no training"
    equation = "prune the top α% MLP neurons by S_n = I(D_f,n) / (I(D_r,n) + ε); no training"
    paper = "Liu et al. 2025, Modality-Aware Neuron Pruning for Unlearning in Multimodal LLMs (MANU); the SMFA paper's App. C"
    reference = "none (no training; importance on D_f vs D_r)"
    options = {
        "prune_pct": Option(5.0, "α: percent of MLP neurons pruned", min=0.0, max=100.0),
        "scope": Option("modality", "rank neurons per modality or per layer", choices=("modality", "layer")),
        "eps": Option(1e-8, "ε in the forget/retain importance ratio", min=0.0, max=1.0),
        "freq_tau": Option(0.5, "active when |a| > freq_tau x the mean |a| (frequency score)", min=0.0, max=1e6),
    }

    def run(self, job: Job) -> Result:
        from .. import models

        opts = self.resolve_options(job.options)
        if opts["scope"] not in ("modality", "layer"):
            from ..errors import MethodError

            raise MethodError(f"manu: scope must be 'modality' or 'layer', got {opts['scope']!r}")
        loaded = models.load_model(job.model_path)
        model = loaded.model
        before = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith(".weight") or n.endswith(".bias")}
        chosen = manu_prune(
            model, loaded.processor, job.forget, job.retain, prune_pct=opts["prune_pct"], scope=opts["scope"],
            eps=opts["eps"], freq_tau=opts["freq_tau"], batch_size=job.train.batch_size,
            max_length=job.train.max_length or None,  # the same truncation as the training methods
        )
        job.out.mkdir(parents=True, exist_ok=True)
        (job.out / "manu_pruned.json").write_text(json.dumps(chosen, indent=1))
        params = dict(model.named_parameters())
        changed = {n: w for n, w in before.items() if not torch.equal(w, params[n])}
        delta = models.export_delta(model, job.out / "delta", original=changed)
        out = models.save_final(model, loaded.processor, job.out / "model")
        n = sum(len(v) for v in chosen.values())
        return Result(model=out, deltas={"delta": delta}, metrics={"pruned_neurons": n, "layers": len(chosen)})
