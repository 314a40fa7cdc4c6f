"""NPO as an smfa plugin: L = -(2/β)·E_f[log σ(-β·(log π_θ(y|x) - log π_ref(y|x)))] + w·CE(D_r).

A template for third-party methods. smfa now ships NPO in-tree (`--method npo`, with tests);
this copy registers as `npo_example` so that both can be installed side by side.

π_ref is the original model: the shared trainer gives its logits (the adapter switched off
under LoRA, a frozen copy under full fine-tuning) because `needs_reference = True`.
"""

from __future__ import annotations

import torch.nn.functional as F

from smfa_methods import Method, hookimpl
from smfa_methods.losses import answer_logprob, ce


class NPO(Method):
    name = "npo_example"
    description = "Example plugin: NPO (the in-tree `npo` is the maintained one)"
    options = {"beta": 0.1, "retain_weight": 1.0}
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


@hookimpl
def register_methods(register):
    register(NPO())
