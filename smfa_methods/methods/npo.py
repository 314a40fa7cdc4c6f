"""NPO and SimNPO: sigmoid-bounded ascent on the forget answers' likelihood.

NPO compares the model with the original (π_ref: the adapter disabled under LoRA, a frozen
copy under full training, see UnlearnTrainer.reference_model); SimNPO drops the reference
and normalises by the answer length instead."""

from __future__ import annotations

import torch.nn.functional as F

from ..losses import answer_lengths, answer_logprob, ce
from ..method import Method
from ..options import Option


class NPO(Method):
    """L = -(2/β)·E_f[log σ(-β·(log π_θ(y|x) - log π_ref(y|x)))] + w·CE(D_r^few), with
    log π(y|x) the sum of the answer tokens' log-probabilities.
    Zhang et al. 2024, "Negative Preference Optimization: From Catastrophic Collapse to
    Effective Unlearning" (COLM)."""

    name = "npo"
    description = "Negative Preference Optimization: sigmoid-bounded ascent on D_f vs the original + CE on D_r^few"
    equation = "L = -(2/β)·mean_f log σ(-β·(log π_θ(y|x) - log π_ref(y|x))) + w·CE(D_r)"
    paper = "Zhang et al. 2024, Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning"
    options = {"beta": Option(0.1, "inverse temperature β (> 0)", min=1e-6, max=1e3), "retain_weight": Option(1.0, "weight of the retain-set term", min=0.0, max=1e6)}
    needs_reference = True

    def compute_loss(self, model, inputs, trainer):
        opts = trainer.method_options
        forget = inputs["forget"]
        logp = answer_logprob(model(**forget).logits, forget["labels"])
        ref = answer_logprob(trainer.reference_logits(model, forget), forget["labels"])
        npo = -(2.0 / opts["beta"]) * F.logsigmoid(-opts["beta"] * (logp - ref)).mean()
        retain = ce(model, inputs["retain"])
        trainer.record(npo=npo, retain_ce=retain)
        return npo + opts["retain_weight"] * retain


class SimNPO(Method):
    """L = -(2/β)·E_f[log σ(-(β/|y|)·log π_θ(y|x) - γ)] + w·CE(D_r^few): NPO without a
    reference model, the log-likelihood normalised by the answer length |y|, margin γ.
    Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for
    LLM Unlearning"."""

    name = "simnpo"
    description = "SimNPO: reference-free, length-normalised NPO with margin γ + CE on D_r^few"
    equation = "L = -(2/β)·mean_f log σ(-(β/|y|)·log π_θ(y|x) - γ) + w·CE(D_r)"
    paper = "Fan et al. 2024, Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning"
    options = {"beta": Option(2.5, "inverse temperature β (> 0)", min=1e-6, max=1e3),
               "gamma": Option(0.0, "margin γ", min=-1e3, max=1e3), "retain_weight": Option(1.0, "weight of the retain-set term", min=0.0, max=1e6)}

    def compute_loss(self, model, inputs, trainer):
        opts = trainer.method_options
        forget = inputs["forget"]
        logp = answer_logprob(model(**forget).logits, forget["labels"])
        norm = logp / answer_lengths(forget["labels"]).clamp(min=1)
        simnpo = -(2.0 / opts["beta"]) * F.logsigmoid(-opts["beta"] * norm - opts["gamma"]).mean()
        retain = ce(model, inputs["retain"])
        trainer.record(simnpo=simnpo, retain_ce=retain)
        return simnpo + opts["retain_weight"] * retain
