"""Weight-only quantization attack with torchao: int8 (symmetric, one scale per output
channel: `Int8WeightOnlyConfig`) or int4 (asymmetric, a scale and zero point per group of
`group_size` input weights: `IntxWeightOnlyConfig(weight_dtype=int4, PerGroup)`).

Why torchao: it is PyTorch's own quantization library, installs beside the pinned CPU torch
without touching it, and its weight-only configs run on CPU. optimum-quanto would do too but
is in maintenance mode. torchao's `Int4WeightOnlyConfig` needs CUDA (tinygemm) or the mslk
kernels; the Intx config is its CPU path for the same int4 scheme, so it is the one used here.

torchao replaces each weight by a tensor subclass (codes + scales) that every later command
would have to know about. We quantize with torchao, then store its `dequantize()` values in an
ordinary checkpoint: a weight-only kernel multiplies the activations by exactly these values,
so the checkpoint computes what the torchao-quantized model computes (a test compares the two
models' logits) and loads everywhere. lm_head stays in full precision (the usual practice for
weight-only schemes; with tied embeddings it is the embedding matrix too).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .quiet import torchao_quiet

BITS = (8, 4)
BACKEND = "torchao"  # part of every quantize attack's fingerprint: outputs of another backend are not reused


def _torchao():
    """Import torchao quietly (it logs a warning per CUDA-only extension it cannot load)."""
    try:
        with torchao_quiet():
            import torchao
            from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, quantize_
            from torchao.quantization.granularity import PerGroup
            from torchao.quantization.quant_primitives import MappingType
    except ImportError as exc:  # an AttackError: the CLI prints it as one line and exits 1
        from . import AttackError

        raise AttackError(f"the quantization attack needs torchao ({exc}): pip install torchao") from None
    return torchao, quantize_, Int8WeightOnlyConfig, IntxWeightOnlyConfig, PerGroup, MappingType


def _config(bits: int, group_size: int):
    _, _, int8_cfg, intx_cfg, per_group, mapping = _torchao()
    if bits == 8:
        return int8_cfg(), "Int8WeightOnlyConfig()"
    if bits == 4:
        return (intx_cfg(weight_dtype=torch.int4, granularity=per_group(group_size), mapping_type=mapping.ASYMMETRIC),
                f"IntxWeightOnlyConfig(weight_dtype=int4, granularity=PerGroup({group_size}), mapping_type=ASYMMETRIC)")
    raise ValueError(f"bits must be one of {BITS}, got {bits}")


def _eligible(mod: torch.nn.Module, fqn: str, group_size: int, bits: int) -> bool:
    """Every nn.Linear but lm_head; for int4, those whose input width is a multiple of the group."""
    return (isinstance(mod, torch.nn.Linear) and not fqn.endswith("lm_head")
            and (bits == 8 or mod.in_features % group_size == 0))


def quantize_model_torchao(model: torch.nn.Module, bits: int, group_size: int = 32) -> dict:
    """Quantize `model` in place with torchao (weights become torchao tensor subclasses)."""
    torchao, quantize_, *_ = _torchao()
    cfg, text = _config(bits, group_size)
    skipped = [n for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head") and not _eligible(m, n, group_size, bits)]
    quantize_(model, cfg, filter_fn=lambda m, fqn: _eligible(m, fqn, group_size, bits))
    return {"bits": bits, "group_size": group_size if bits == 4 else None, "backend": f"torchao {torchao.__version__}",
            "config": text, "skipped": skipped}


def quantize_model(model: torch.nn.Module, bits: int, group_size: int = 32) -> dict:
    """Quantize every eligible nn.Linear with torchao and write its dequantized weight back as
    a plain parameter, in place: the model computes the quantized model's outputs and saves
    as an ordinary checkpoint."""
    info = quantize_model_torchao(model, bits, group_size)
    from torchao.utils import TorchAOBaseTensor

    n = params = 0
    with torch.no_grad():
        for _, mod in model.named_modules():
            w = getattr(mod, "weight", None)
            if isinstance(mod, torch.nn.Linear) and isinstance(w, TorchAOBaseTensor):
                mod.weight = torch.nn.Parameter(w.dequantize().to(w.dtype))
                n += 1
                params += mod.weight.numel()
    return {**info, "linears": n, "weights": params}


def quantize_checkpoint(model: Path, out: Path, bits: int, group_size: int = 32) -> dict:
    """Load `model`, quantize, save the result (model + processor) to `out`."""
    from smfa_methods.models import load_model, save_final

    loaded = load_model(model)
    info = quantize_model(loaded.model, bits, group_size)
    save_final(loaded.model, loaded.processor, out)
    return info
