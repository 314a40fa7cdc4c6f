"""Sculpt-and-merge for the `smfa` method. The streaming engine `smfa_core.sculpt` does it
when available (same code path as `smfa sculpt`); otherwise an in-memory equivalent built
on `smfa_core.sculpt_tensor` (fine for small models; the engine is the scalable one).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import models

_LORA_PREFIX = "base_model.model."


def read_delta(path: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A delta dir exported by `models.export_delta` → {live parameter name: fp32 ΔW}."""
    from safetensors.torch import load_file

    if (path / "adapter_config.json").exists():
        cfg = json.loads((path / "adapter_config.json").read_text())
        scale = cfg["lora_alpha"] / (cfg["r"] ** 0.5 if cfg.get("use_rslora") else cfg["r"])
        sd = load_file(str(path / "adapter_model.safetensors"))
        out = {}
        for key, a in sd.items():
            if ".lora_A." not in key:
                continue
            b = sd[key.replace(".lora_A.", ".lora_B.")]
            name = key.removeprefix(_LORA_PREFIX).replace(".lora_A.weight", ".weight")
            out[name] = (b.float() @ a.float()) * scale
        return out
    disk = load_file(str(path / models.DELTA_FILE))
    live = {n: models.to_disk_names(model, {n: p}) for n, p in model.named_parameters()}
    disk_to_live = {next(iter(d)): n for n, d in live.items() if len(d) == 1}
    return {disk_to_live[k]: v.float() for k, v in disk.items()}


def sculpt_in_memory(
    forget: Path, anchor: Path, *, k: float, base: Path, out: Path, mode: str = "both", eps: float = 1e-8
) -> dict:
    """Merged = W_o + sculpt(ΔW_f, ΔW_a) for every tensor of ΔW_f, saved as an HF checkpoint."""
    from smfa_core import sculpt_tensor

    loaded = models.load_model(base)
    model = loaded.model
    f, a = read_delta(Path(forget), model), read_delta(Path(anchor), model)
    params = dict(model.named_parameters())
    report = {}
    with torch.no_grad():
        for name, fd in f.items():
            merged, stats = sculpt_tensor(fd, a[name], k, mode=mode, eps=eps, base=params[name].data)
            params[name].data.copy_(merged)
            report[name] = stats.as_dict()
    models.save_final(model, loaded.processor, out)
    return {"engine": "in-memory", "tensors": report}


def sculpt_and_merge(
    forget: Path, anchor: Path, *, k: float, base: Path, out: Path, mode: str = "both", eps: float = 1e-8
) -> dict:
    """The streaming engine when it is there, the in-memory path otherwise."""
    try:
        from smfa_core.engine import sculpt  # noqa: F401  (probe: the engine may not exist yet)
    except ImportError:
        return sculpt_in_memory(forget, anchor, k=k, base=base, out=out, mode=mode, eps=eps)
    import smfa_core

    report = smfa_core.sculpt(
        str(forget), str(anchor), k=k, base=str(base), out=str(out), emit="merged", mode=mode, eps=eps,
        overwrite=True,
    )
    return report if isinstance(report, dict) else {"engine": "smfa_core.sculpt", "report": str(report)}
