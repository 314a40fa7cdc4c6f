"""IDK tuning (App. C, Eq. 14): L = L(D_f^idk) + L(D_r^few), the forget answers replaced
by refusals sampled per example from our pool."""

from __future__ import annotations

from ..data import Example, PairedDataset, relabel
from ..job import Job
from ..losses import ce
from ..method import Method
from ..options import Option
from ..refusals import sample_refusals


def with_refusals(forget: list[Example], seed: int) -> list[Example]:
    """D_f^idk: same questions/images, a refusal drawn per example (deterministic in seed)."""
    labels = sample_refusals(len(forget), seed=seed)
    return relabel(forget, lambda i, _ex: labels[i])


class IdkTuning(Method):
    name = "idk"
    description = "IDK tuning (Eq. 14): CE on forget questions with sampled refusals + CE on D_r^few"
    equation = "L = CE(D_f^idk) + w·CE(D_r)"
    paper = "Maini et al. 2024, TOFU: A Task of Fictitious Unlearning for LLMs; the SMFA paper's App. C (Eq. 14)"
    options = {"retain_weight": Option(1.0, "weight of the retain-set term", min=0.0, max=1e6)}

    def make_dataset(self, job: Job):
        return PairedDataset(with_refusals(job.forget, job.train.seed), job.retain, seed=job.train.seed)

    def compute_loss(self, model, inputs, trainer):
        lf, lr = ce(model, inputs["forget"]), ce(model, inputs["retain"])
        trainer.record(forget_ce=lf, retain_ce=lr)
        return lf + trainer.method_options["retain_weight"] * lr
