"""GA Difference (App. C, Eq. 12): L = -L(D_f) + L(D_r^few), both terms in one step."""

from __future__ import annotations

from ..losses import ce
from ..method import Method
from ..options import Option


class GADiff(Method):
    name = "ga_diff"
    description = "Gradient difference (Eq. 12): ascend CE on D_f, descend CE on D_r^few"
    equation = "L = -CE(D_f) + w·CE(D_r)"
    paper = "Liu et al. 2022, Continual Learning and Private Unlearning (CoLLAs); the SMFA paper's App. C (Eq. 12)"
    options = {"retain_weight": Option(1.0, "weight of the retain-set term", min=0.0, max=1e6)}

    def compute_loss(self, model, inputs, trainer):
        lf, lr = ce(model, inputs["forget"]), ce(model, inputs["retain"])
        trainer.record(forget_ce=lf, retain_ce=lr)
        return -lf + trainer.method_options["retain_weight"] * lr
