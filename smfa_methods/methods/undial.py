"""UNDIAL: self-distillation towards the original model's logits with the answer token pushed down."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..losses import answer_positions, ce
from ..method import Method
from ..options import Option


def undial_targets(ref_logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    """softmax(z_ref - γ·onehot(y_t)) per answer position: the teacher distribution."""
    adjusted = ref_logits.float().clone()
    adjusted.scatter_add_(-1, targets.unsqueeze(-1), torch.full_like(adjusted[:, :1], -gamma))
    return adjusted.softmax(-1)


class UNDIAL(Method):
    """L = E_{f, t ∈ answer}[CE(softmax(z_ref,t - γ·e_{y_t}), softmax(z_θ,t))] + w·CE(D_r^few):
    the student matches the original model's next-token distribution with the true token's
    logit lowered by γ (a bounded target: no runaway ascent).
    Dong et al. 2025, "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in
    Large Language Models" (NAACL)."""

    name = "undial"
    description = "UNDIAL: self-distil to the original's logits with the answer token lowered by γ + CE on D_r^few"
    equation = "L = mean_{f,t} CE(softmax(z_ref,t - γ·onehot(y_t)), softmax(z_θ,t)) + w·CE(D_r)"
    paper = "Dong et al. 2025, UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in LLMs (NAACL)"
    options = {"gamma": Option(10.0, "γ: how far the target token's logit is lowered", min=0.0, max=1e4),
               "retain_weight": Option(1.0, "weight of the retain-set term", min=0.0, max=1e6)}
    needs_reference = True

    def compute_loss(self, model, inputs, trainer):
        opts = trainer.method_options
        forget = inputs["forget"]
        logits, targets = answer_positions(model(**forget).logits, forget["labels"])
        ref, _ = answer_positions(trainer.reference_logits(model, forget), forget["labels"])
        soft = undial_targets(ref, targets, opts["gamma"])
        distil = -(soft * F.log_softmax(logits, -1)).sum(-1).mean()
        retain = ce(model, inputs["retain"])
        trainer.record(undial=distil, retain_ce=retain)
        return distil + opts["retain_weight"] * retain
