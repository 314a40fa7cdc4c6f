"""The trained model, whole, for export after a sharded run.

Under DDP (and one process) every rank holds the whole model: the trainer's model is exported
as is. Under FSDP2 the parameters are DTensor shards and under DeepSpeed ZeRO-3 they are
partitioned: `whole_model` gathers a full state dict (a collective: every process must call
it), and the main process loads it into a fresh, unsharded copy of the same model (the base
checkpoint, prepared the same way), which exports like a single-process run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from . import models
from .job import Job

if TYPE_CHECKING:
    from transformers import Trainer


def sharding_of(model: torch.nn.Module) -> str | None:
    """"fsdp2" (DTensor parameters), "zero3" (DeepSpeed-partitioned ones) or None (whole)."""
    for p in model.parameters():
        if type(p).__name__ == "DTensor" or hasattr(p, "to_local"):
            return "fsdp2"
        if hasattr(p, "ds_id"):
            return "zero3"
    return None


def full_state_dict(trainer: Trainer, kind: str) -> dict[str, torch.Tensor]:
    """Every parameter whole, on the CPU of the main process (empty elsewhere); a collective."""
    if kind == "fsdp2":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(trainer.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    # ZeRO-3: accelerate gathers the 16-bit weights (stage3_gather_16bit_weights_on_model_save)
    return trainer.accelerator.get_state_dict(trainer.model_wrapped)


def whole_model(trainer: Trainer, job: Job) -> torch.nn.Module | None:
    """The trained model as one whole module on the main process, None on the others. Every
    process must call it (it gathers under FSDP2 / ZeRO-3)."""
    kind = sharding_of(trainer.model)
    if kind is None:
        return trainer.model if trainer.is_world_process_zero() else None
    state = full_state_dict(trainer, kind)
    if not trainer.is_world_process_zero():
        return None
    cfg = job.train
    fresh = models.prepare_for_training(
        models.load_model(job.model_path, dtype=torch.float32).model, cfg.mode,
        target=cfg.target or models.LANGUAGE_LINEAR, lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha)
    fresh.load_state_dict(state, strict=True)
    return fresh
