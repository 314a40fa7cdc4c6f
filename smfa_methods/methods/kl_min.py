"""KL Minimization (App. C, Eq. 13): L = -L(D_f) + KL(f_orig || f_θ) on D_r^few. Under LoRA
the original's logits come from the same model with its adapter disabled."""

from __future__ import annotations

from ..losses import answer_kl, ce
from ..method import Method
from ..options import Option


class KLMin(Method):
    name = "kl_min"
    description = "KL minimization (Eq. 13): ascend CE on D_f, KL to the original model on D_r^few"
    equation = "L = -CE(D_f) + w·mean_r KL(p_orig ‖ p_θ)"
    paper = "Nguyen et al. 2020, Variational Bayesian Unlearning (NeurIPS); the SMFA paper's App. C (Eq. 13)"
    options = {"retain_weight": Option(1.0, "weight of the retain-set term", min=0.0, max=1e6)}
    needs_reference = True

    def compute_loss(self, model, inputs, trainer):
        lf = ce(model, inputs["forget"])
        retain = inputs["retain"]
        ref = trainer.reference_logits(model, retain)
        kl = answer_kl(ref, model(**retain).logits, retain["labels"])
        trainer.record(forget_ce=lf, retain_kl=kl)
        return -lf + trainer.method_options["retain_weight"] * kl
