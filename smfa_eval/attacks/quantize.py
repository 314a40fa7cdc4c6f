"""Weight-only quantization attack: int8 (symmetric, one scale per output channel) or int4
(asymmetric, a scale and zero point per group of `group_size` input weights), round to
nearest, as torchao's Int8WeightOnly / Int4WeightOnly configs and optimum-quanto's qint8 /
qint4 weights do.

Neither library is importable in this project's environment (and installing one pulls a
different torch), so the codes are computed here in plain torch and dequantized back into the
checkpoint: a weight-only kernel multiplies by exactly these dequantized values, so the
model's outputs are those of the quantized model up to accumulation order, and the result is
an ordinary checkpoint that every other command loads. `quantize_tensor` is checked against
hand-worked codes in the tests. lm_head stays in full precision (the usual practice, and
torchao's default filter skips it too for tied embeddings).
"""

from __future__ import annotations

from pathlib import Path

import torch

BITS = (8, 4)


def quantize_tensor(w: torch.Tensor, bits: int, group_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(integer codes, dequantized weight) of a 2-D weight [out, in]. int8: codes in
    [-127, 127], scale = max|w| / 127 per row. int4: codes in [0, 15] per group of
    `group_size` columns (the whole row when `in` is not a multiple), scale = (max - min) / 15,
    zero point = round(-min / scale)."""
    if w.dim() != 2:
        raise ValueError(f"expected a 2-D weight, got shape {tuple(w.shape)}")
    x = w.detach().float()
    if bits == 8:
        scale = (x.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-12)
        q = torch.clamp(torch.round(x / scale), -127, 127)
        return q.to(torch.int8), (q * scale).to(w.dtype)
    if bits != 4:
        raise ValueError(f"bits must be one of {BITS}, got {bits}")
    rows, cols = x.shape
    g = group_size if cols % group_size == 0 else cols
    xg = x.reshape(rows, cols // g, g)
    lo, hi = xg.amin(dim=2, keepdim=True), xg.amax(dim=2, keepdim=True)
    scale = ((hi - lo) / 15).clamp(min=1e-12)
    zero = torch.clamp(torch.round(-lo / scale), 0, 15)
    q = torch.clamp(torch.round(xg / scale) + zero, 0, 15)
    deq = ((q - zero) * scale).reshape(rows, cols)
    return q.reshape(rows, cols).to(torch.uint8), deq.to(w.dtype)


def quantize_model(model: torch.nn.Module, bits: int, group_size: int = 32) -> dict:
    """Replace every nn.Linear weight except lm_head by its dequantized codes, in place."""
    n = params = 0
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and not name.endswith("lm_head"):
                _, deq = quantize_tensor(mod.weight, bits, group_size)
                mod.weight.copy_(deq)
                n += 1
                params += mod.weight.numel()
    return {"bits": bits, "group_size": group_size if bits == 4 else None, "linears": n, "weights": params,
            "backend": "torch round-to-nearest (dequantized checkpoint)"}


def quantize_checkpoint(model: Path, out: Path, bits: int, group_size: int = 32) -> dict:
    """Load `model`, quantize, save the result (model + processor) to `out`."""
    from smfa_methods.models import load_model, save_final

    loaded = load_model(model)
    info = quantize_model(loaded.model, bits, group_size)
    save_final(loaded.model, loaded.processor, out)
    return info
