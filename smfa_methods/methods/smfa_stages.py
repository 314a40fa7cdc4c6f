"""The stages the SMFA variants share (paper, per-modality, public): train one stage and
export its delta, sum dense deltas, and the sculpt summary a Result carries. Imported by
smfa.py and the variant modules, importing none of them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..job import Job

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from ..method import Method


def train_and_export(method: Method, job: Job, dataset: Dataset, stage: str) -> tuple:
    """Train one stage, export its delta to out/STAGE; returns (trainer, loaded, delta path,
    metrics, the whole trained model: the main process's, None on the others)."""
    from .. import models
    from ..distributed import whole_model
    from ..trainer import final_metrics, fit

    trainer, loaded, original = fit(method, job, dataset, job.out / "checkpoints" / stage)
    path = None
    model = whole_model(trainer, job)  # the main process's; a collective under FSDP2 / ZeRO-3
    if model is not None:
        path = models.export_delta(model, job.out / stage, original=original)
    trainer.accelerator.wait_for_everyone()
    return trainer, loaded, path, final_metrics(trainer), model


def sum_deltas(paths: list[Path], out: Path, scale: float = 1.0) -> Path:
    """One dense delta = `scale` x the sum of dense deltas (fp32, summed tensor by tensor: all
    of one delta's tensors are in memory at once, a sculpted delta's size, not the model's).
    scale 0.5 over two deltas is their mean (the `public` variant)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ..models import DELTA_FILE

    total: dict[str, torch.Tensor] = {}
    for p in paths:
        with safe_open(str(p / DELTA_FILE), framework="pt") as fh:
            for name in fh.keys():
                t = fh.get_tensor(name).float()
                total[name] = total[name] + t if name in total else t
    if scale != 1.0:  # leave per_modality's plain sum bit for bit as it was
        total = {name: t * scale for name, t in total.items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(total, str(out / DELTA_FILE), metadata={"format": "pt", "smfa": "dense-delta"})
    return out


def summary(report: dict) -> dict:
    """What a Result keeps of a sculpt report: engine, backend, tensor count, masked share."""
    totals = report["totals"]
    return {"engine": "smfa_core.sculpt", "backend": report["backend"], "tensors": totals["tensors"],
            "masked_pct": totals["masked_pct"]}
