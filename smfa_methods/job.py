"""What a run is given and gives back: the training loop's knobs (`TrainConfig`), the job
(`Job`: model, data, output directory, settings) and its `Result`. Plain data: the method
base class (method.py), the loop (trainer.py) and the orchestration (api.py) all import it,
and it imports none of them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .data import Example
from .errors import MethodError

TRAIN_MODES = ("lora", "full", "all")
SCHEDULERS = ("constant", "cosine")


@dataclass
class TrainConfig:
    """The loop's knobs, shared by every training method (CLI flags)."""

    mode: str = "lora"              # "lora" | "full" (target linears) | "all" (every parameter)
    target: str | None = None       # regex of linear layer names; None = language model linears
    lora_r: int = 8
    lora_alpha: int = 16
    epochs: float = 1.0
    max_steps: int = -1
    lr: float = 1e-4
    batch_size: int = 4
    grad_accum: int = 1
    weight_decay: float = 0.0
    warmup_steps: int = 0
    warmup_ratio: float = 0.0       # share of the steps spent warming up (used when warmup_steps is 0)
    scheduler: str = "constant"     # "constant" | "cosine" (decays to min_lr_ratio x lr)
    min_lr_ratio: float = 0.0
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    seed: int = 0
    bf16: bool = False
    fp16: bool = False               # needs a GPU; on CPU use bf16
    max_length: int = 1024           # tokens per example, image tokens included; 0 = no limit
    save_steps: int = 0              # 0 = no intermediate checkpoints
    logging_steps: int = 10
    resume: bool = False             # resume from the newest checkpoint under out/checkpoints
    report_to: str = "none"
    progress: bool | None = None     # bar / log lines (progress.ProgressCallback); None = bar on a terminal

    def validate(self) -> None:
        """Raise MethodError (named after the CLI flag) for settings the loop cannot run,
        before any model is loaded."""
        if self.mode not in TRAIN_MODES:
            raise MethodError(f"training mode must be one of {', '.join(TRAIN_MODES)}, got {self.mode!r}")
        if self.scheduler not in SCHEDULERS:
            raise MethodError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        for flag, value, low, high in (("--lr", self.lr, 0.0, 1.0), ("--warmup-ratio", self.warmup_ratio, 0.0, 1.0),
                                       ("--min-lr-ratio", self.min_lr_ratio, 0.0, 1.0),
                                       ("--adam-beta2", self.adam_beta2, 0.0, 1.0),
                                       ("--weight-decay", self.weight_decay, 0.0, 1.0)):
            if not (math.isfinite(value) and low <= value <= high):
                raise MethodError(f"{flag} must be in [{low:g}, {high:g}], got {value}")
        for flag, value, low in (("--batch-size", self.batch_size, 1), ("--grad-accum", self.grad_accum, 1),
                                 ("--max-length", self.max_length, 0)):
            if value < low:
                raise MethodError(f"{flag} must be >= {low}, got {value}")
        if self.max_length == 1:  # one token leaves nothing to predict the answer from
            raise MethodError("--max-length must be 0 (no limit) or >= 2, got 1")
        if self.bf16 and self.fp16:
            raise MethodError("--bf16 and --fp16 are exclusive; pick one")
        if self.fp16 and not accelerator_available():
            raise MethodError("--fp16 needs a GPU (fp16 autocast with loss scaling); on CPU use --bf16")


def accelerator_available() -> bool:
    """A GPU-like device torch can train on (CUDA, ROCm, XPU, MPS, ...)."""
    acc = getattr(torch, "accelerator", None)  # torch >= 2.6
    return acc.is_available() if acc is not None else torch.cuda.is_available()


@dataclass
class Job:
    """One `smfa unlearn` call: the model, the data, where to write, and the settings."""

    model_path: Path
    out: Path
    forget: list[Example]
    retain: list[Example]
    train: TrainConfig = field(default_factory=TrainConfig)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """Where a run wrote its outputs; `model` is a loadable HF checkpoint dir."""

    model: Path | None = None
    deltas: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "model": str(self.model) if self.model else None,
            "deltas": {k: str(v) for k, v in self.deltas.items()},
            "metrics": self.metrics,
        }
