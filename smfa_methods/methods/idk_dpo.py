"""IdkDPO: DPO with a refusal as the preferred answer and the true answer as the rejected one."""

from __future__ import annotations

import torch.nn.functional as F

from ..data import Example, PairedDataset
from ..job import Job
from ..losses import answer_logprob, ce
from ..method import Method
from ..options import Option
from .idk import with_refusals


class PreferenceDataset(PairedDataset):
    """Item = {"forget": true answer (rejected), "idk": the same question with a refusal
    (preferred), "retain": its retain partner}; one epoch = one pass over D_f."""

    def __init__(self, forget: list[Example], idk: list[Example], retain: list[Example], seed: int = 0):
        super().__init__(forget, retain, seed=seed)
        self.idk = list(idk)

    def __getitem__(self, i: int) -> dict:
        return {**super().__getitem__(i), "idk": self.idk[i]}


class IdkDPO(Method):
    """L = -(2/β)·E_f[log σ(β·((log π_θ(y_idk|x) - log π_ref(y_idk|x)) - (log π_θ(y|x) - log π_ref(y|x))))]
    + w·CE(D_r^few): y_idk a refusal sampled per example from our pool (as `idk`), y the true
    answer, π_ref the original model. Rafailov et al. 2023, "Direct Preference Optimization"
    (NeurIPS); the IdkDPO unlearning baseline of Zhang et al. 2024 (NPO) and open-unlearning."""

    name = "idk_dpo"
    description = "IdkDPO: DPO preferring a refusal over the true forget answer, vs the original + CE on D_r^few"
    equation = ("L = -(2/β)·mean_f log σ(β·[(log π_θ - log π_ref)(y_idk|x) - (log π_θ - log π_ref)(y|x)])"
                " + w·CE(D_r)")
    paper = "Rafailov et al. 2023, Direct Preference Optimization (NeurIPS); IdkDPO as in Zhang et al. 2024 (NPO)"
    options = {"beta": Option(0.1, "inverse temperature β (> 0)", min=1e-6, max=1e3), "retain_weight": Option(1.0, "weight of the retain-set term", min=0.0, max=1e6)}
    needs_reference = True

    def make_dataset(self, job: Job):
        return PreferenceDataset(job.forget, with_refusals(job.forget, job.train.seed), job.retain, seed=job.train.seed)

    def compute_loss(self, model, inputs, trainer):
        opts = trainer.method_options

        def log_ratio(batch):
            labels = batch["labels"]
            return (answer_logprob(model(**batch).logits, labels)
                    - answer_logprob(trainer.reference_logits(model, batch), labels))

        margin = log_ratio(inputs["idk"]) - log_ratio(inputs["forget"])
        dpo = -(2.0 / opts["beta"]) * F.logsigmoid(opts["beta"] * margin).mean()
        retain = ce(model, inputs["retain"])
        trainer.record(dpo=dpo, retain_ce=retain)
        return dpo + opts["retain_weight"] * retain
