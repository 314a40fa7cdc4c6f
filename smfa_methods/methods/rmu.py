"""RMU (Representation Misdirection for Unlearning): on forget inputs, steer one decoder
layer's output towards a scaled random direction; on retain inputs, keep it equal to the
frozen original's."""

from __future__ import annotations

import torch

from ..errors import MethodError
from ..method import Method
from ..options import Option


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The language model's decoder layers (the `layers` ModuleList outside any vision tower),
    whatever wraps the model (peft, DDP)."""
    found = [(n, m) for n, m in model.named_modules()
             if isinstance(m, torch.nn.ModuleList) and n.split(".")[-1] == "layers"
             and not any(t in n for t in ("vision", "visual"))]
    if not found:
        raise MethodError("rmu: no decoder `layers` list found in the model")
    return min(found, key=lambda nm: nm[0].count("."))[1]  # the outermost: the language model's


def layer_index(model: torch.nn.Module, layer: int) -> int:
    """Option `layer` → a decoder layer index; -1 = a quarter of the way in (RMU's 7 of 32)."""
    n = len(decoder_layers(model))
    i = n // 4 if layer == -1 else layer
    if not 0 <= i < n:
        raise MethodError(f"rmu: layer {layer} out of range; the model has {n} decoder layers (0..{n - 1}, or -1)")
    return i


def layer_output(model: torch.nn.Module, inputs: dict, index: int) -> torch.Tensor:
    """Hidden states leaving decoder layer `index` (before the final norm, unlike the last
    entry of output_hidden_states), from one forward pass of `model`."""
    got: list[torch.Tensor] = []

    def hook(_mod, _args, out):
        got.append(out[0] if isinstance(out, tuple) else out)

    handle = decoder_layers(model)[index].register_forward_hook(hook)
    try:
        model(**{k: v for k, v in inputs.items() if k != "labels"})
    finally:
        handle.remove()
    return got[-1]


def control_vector(dim: int, coeff: float, seed: int, device: torch.device | str,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """c·u with u ~ U[0,1)^d normalised to unit length, fixed by `seed` (the same on every rank)."""
    u = torch.rand(dim, generator=torch.Generator().manual_seed(seed))
    return (coeff * u / u.norm()).to(device=device, dtype=dtype)


def token_mse(h: torch.Tensor, target: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over non-padding tokens and hidden units of (h - target)²."""
    sq = (h.float() - target.float()).pow(2).mean(-1)
    if attention_mask is None:
        return sq.mean()
    m = attention_mask.to(sq.dtype)
    return (sq * m).sum() / m.sum().clamp(min=1)


class RMU(Method):
    r"""L = E_f[‖h_θ^ℓ(x) - c·u‖²] + α·E_r[‖h_θ^ℓ(x) - h_orig^ℓ(x)‖²] (mean over tokens and
    hidden units): h^ℓ the output of decoder layer ℓ, u a fixed random unit vector, h_orig the
    frozen original's activations (the adapter disabled under LoRA, the frozen copy under full
    training). Li et al. 2024, "The WMDP Benchmark: Measuring and Reducing Malicious Use With
    Unlearning" (ICML). Which weights train is `--target`, as for every method; the paper
    trains the MLPs of layers ℓ-2..ℓ, e.g. --full --target '.*layers\.[5-7]\.mlp\.(gate|up|down)_proj'."""

    name = "rmu"
    description = "RMU: steer layer ℓ's forget activations to c·u, keep retain activations at the original's"
    equation = "L = mean_f ‖h_θ^ℓ - c·u‖² + α·mean_r ‖h_θ^ℓ - h_orig^ℓ‖²"
    paper = "Li et al. 2024, The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning (ICML)"
    reference = "original model's layer-ℓ activations on D_r (adapter disabled under LoRA; frozen copy under full)"
    options = {"layer": Option(-1, "decoder layer ℓ steered (-1: a quarter of the way in)", min=-1, max=10_000),
               "steering_coeff": Option(6.5, "c: scale of the random control vector", min=0.0, max=1e6),
               "alpha": Option(100.0, "α: weight of the retain activation term", min=0.0, max=1e9),
               "seed": Option(0, "seed of the random direction u", min=0, max=2**31 - 1)}
    needs_reference = True

    def compute_loss(self, model, inputs, trainer):
        opts = trainer.method_options
        forget, retain = inputs["forget"], inputs["retain"]
        idx = layer_index(model, opts["layer"])
        h_f = layer_output(model, forget, idx)
        target = control_vector(h_f.shape[-1], opts["steering_coeff"], opts["seed"], h_f.device)
        lf = token_mse(h_f, target, forget.get("attention_mask"))
        h_r = layer_output(model, retain, idx)
        with torch.no_grad(), trainer.reference_model(model) as ref:
            h_ref = layer_output(ref, retain, idx)
        lr = token_mse(h_r, h_ref, retain.get("attention_mask"))
        trainer.record(forget_mse=lf, retain_mse=lr)
        return lf + opts["alpha"] * lr
