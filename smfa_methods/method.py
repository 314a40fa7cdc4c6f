"""What a method plugin provides, and the job it runs.

A method is an object with `name`, `description`, `options` (defaults or `options.Option`s
with a type, range and help line, overridable with `--set method.key=value`) and either
- `compute_loss(model, inputs, trainer)`: a loss over one batch; the shared training loop
  (`trainer.UnlearnTrainer`) does the rest. `make_dataset(job)` chooses the data (default:
  D_f paired with D_r^few), or
- `run(job)`: full control (MANU prunes without training; SMFA trains twice and sculpts).
Subclass `Method` to get the defaults.
"""

from __future__ import annotations

from typing import Any

import torch

from .data import PairedDataset
from .job import SCHEDULERS, TRAIN_MODES, Job, Result, TrainConfig, accelerator_available  # noqa: F401 (the old import path)
from .options import resolve


class Method:
    """Base class for methods; subclasses set name/description/options and override
    compute_loss (training methods) or run (anything else)."""

    name: str = ""
    description: str = ""
    options: dict[str, Any] = {}
    needs_reference: bool = False  # True: the trainer keeps the original model's logits available
    # For `smfa methods --verbose` and docs/methods.md (the one place each method states them):
    equation: str = ""   # the objective, in plain text
    paper: str = ""      # the source paper (authors, year, title)
    reference: str = ""  # what the loss compares against; "" = derived from needs_reference

    def resolve_options(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults overridden by `given`, typed by each default and range-checked (see
        options.py); unknown keys are an error that lists the valid ones."""
        return resolve(self.name, self.options, given)

    def make_dataset(self, job: Job):
        """Training data; the default pairs each forget example with a retain example."""
        return PairedDataset(job.forget, job.retain, seed=job.train.seed)

    def trainer_callbacks(self, job: Job) -> list:
        """Extra `transformers.TrainerCallback`s for the shared loop (logging, early stop...)."""
        return []

    def compute_loss(self, model: torch.nn.Module, inputs: dict, trainer) -> torch.Tensor:
        raise NotImplementedError(f"method {self.name!r} defines neither compute_loss nor run")

    def run(self, job: Job) -> Result:
        """Default: the shared training loop with this method's loss, then export."""
        from .trainer import train_method

        return train_method(self, job)
