"""Gradient Ascent: maximise the forget set's cross-entropy, nothing else."""

from __future__ import annotations

from ..data import ExampleDataset
from ..job import Job
from ..losses import ce
from ..method import Method


class GradAscent(Method):
    """L = -L(D_f): gradient ascent on the forget answers (no retain term; D_r^few is unused).
    Jang et al. 2023, "Knowledge Unlearning for Mitigating Privacy Risks in Language Models"
    (ACL); the GA baseline of TOFU (Maini et al. 2024)."""

    name = "grad_ascent"
    description = "Gradient ascent: ascend CE on D_f only (no retain term)"
    equation = "L = -CE(D_f)"
    paper = "Jang et al. 2023, Knowledge Unlearning for Mitigating Privacy Risks in Language Models (ACL)"
    options: dict = {}

    def make_dataset(self, job: Job):
        return ExampleDataset(job.forget)

    def compute_loss(self, model, inputs, trainer):
        lf = ce(model, inputs)
        trainer.record(forget_ce=lf)
        return -lf
