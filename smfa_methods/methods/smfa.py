"""SMFA (§3): MFA = fine-tune on D_f^idk ∪ D_r^few (Eq. 4), retaining anchor = fine-tune on
D_r^few, then sculpt the MFA with the anchor (k, mode) and merge. Both deltas are kept
(out/forget, out/anchor) so `smfa sculpt` can re-sculpt with another k without retraining.
`mfa` is the unsculpted ablation: the MFA merged as is.

Options beyond the paper's: `k_rules` (a k per tensor: a list of 'REGEX=K', first fullmatch on
the on-disk tensor name wins, `k` for the rest; or the path of a rules file) and
`per_modality` (separate image-memory and text-memory forget deltas with their own k:
`k_image`, `k_text`, -1 = `k`; see smfa_modality), and `variant`: "paper" (the default: all of
the above) or "public", the one public re-implementation's SMFA (Open-MMUnlearning: the anchor
trained jointly with a multimodal-view and a text-view forget adapter in one run, each forget
delta sculpted with its own k, `k_image` / `k_text`, then the two averaged; see smfa_public)."""

from __future__ import annotations

from smfa_core._ops import MODES
from smfa_core.tensor_api import MAX_K

from ..data import ExampleDataset
from ..errors import MethodError
from ..job import Job, Result
from ..losses import ce
from ..method import Method
from ..options import Option
from ..sculpting import k_rules_option, sculpt_and_merge
from .idk import with_refusals
from .smfa_stages import summary as _summary
from .smfa_stages import train_and_export as _train_and_export

VARIANTS = ("paper", "public")


class MFA(Method):
    name = "mfa"
    description = "Memory Forgetting Adapter (Eq. 4): fine-tune on D_f^idk ∪ D_r^few, merged unsculpted"
    equation = "θ = θ_o + ΔW_f,  ΔW_f = argmin CE(D_f^idk ∪ D_r)"
    paper = "the SMFA paper, §3 (Eq. 4): the unsculpted ablation"
    options: dict = {}

    def mfa_dataset(self, job: Job) -> ExampleDataset:
        return ExampleDataset(with_refusals(job.forget, job.train.seed) + list(job.retain))

    def compute_loss(self, model, inputs, trainer):
        return ce(model, inputs)  # plain cross-entropy: the data carries the method

    def run(self, job: Job) -> Result:
        from .. import models

        trainer, loaded, path, metrics, model = _train_and_export(self, job, self.mfa_dataset(job), "forget")
        result = Result(deltas={"forget": path} if path else {}, metrics={"forget": metrics})
        if model is not None:
            result.model = models.save_final(model, loaded.processor, job.out / "model")
        trainer.accelerator.wait_for_everyone()
        return result


class SMFA(MFA):
    name = "smfa"
    description = "SMFA (§3): MFA sculpted by a retaining anchor trained on D_r^few, then merged"
    equation = "θ = θ_o + ΔW_f ⊙ ¬(C ∧ R),  C: sign(ΔW_f) ≠ sign(ΔW_a),  R: kρ|ΔW_a| > |ΔW_f|"
    paper = "the SMFA paper, §3 (Eqs. 4-11)"
    reference = "none (a retaining anchor ΔW_a trained on D_r^few)"
    options = {
        "k": Option(1.0, "magnitude factor k in k·ρ·|ΔW_a| < |ΔW_f| (smfa sculpt --k)", min=0.0, max=MAX_K),
        "mode": Option("both", "mask rule (smfa sculpt --mode)", choices=tuple(MODES)),
        "eps": Option(1e-8, "ε in ρ = ‖ΔW_f‖/(‖ΔW_a‖+ε)", min=0.0, max=1.0),
        "k_rules": Option([], "per-tensor k: REGEX=K strings (fullmatch on tensor names, first match wins) "
                              "or a rules file (smfa sculpt --k-rule / --k-rules)"),
        "per_modality": Option(False, "separate image- and text-memory forget deltas, each sculpted, summed"),
        "k_image": Option(-1.0, "k of the image forget delta (per_modality / variant=public; -1: k)",
                          min=-1.0, max=MAX_K),
        "k_text": Option(-1.0, "k of the text forget delta (per_modality / variant=public; -1: k)",
                         min=-1.0, max=MAX_K),
        "variant": Option("paper", "paper (the paper's SMFA) or public (the public re-implementation's)"),
    }

    def resolve_options(self, given: dict) -> dict:
        """The base checks, plus `variant` (one of VARIANTS, not with per_modality): checked
        here so a preset or `--set` naming a bad one fails before anything loads."""
        opts = super().resolve_options(given)
        if opts["variant"] not in VARIANTS:
            raise MethodError(f"option 'variant' of 'smfa' must be one of {', '.join(VARIANTS)}, "
                              f"got {opts['variant']!r}")
        if opts["variant"] == "public" and opts["per_modality"]:
            raise MethodError("smfa: variant=public has its own two forget deltas (a multimodal and a text-only "
                              "view); it does not combine with per_modality")
        return opts

    def run(self, job: Job) -> Result:
        opts = self.resolve_options(job.options)
        k_rules = k_rules_option(opts["k_rules"])  # a bad rule fails before any training
        if opts["variant"] == "public":
            from .smfa_public import run_public

            return run_public(self, job, opts, k_rules)
        if opts["per_modality"]:
            from .smfa_modality import run_per_modality

            return run_per_modality(self, job, opts, k_rules)
        tr_f, _, forget, m_f, whole_f = _train_and_export(self, job, self.mfa_dataset(job), "forget")
        del tr_f, whole_f  # free the first model before training the anchor
        tr_a, _, anchor, m_a, _ = _train_and_export(self, job, ExampleDataset(job.retain), "anchor")
        result = Result(metrics={"forget": m_f, "anchor": m_a})
        if tr_a.is_world_process_zero():
            out = job.out / "model"
            report = sculpt_and_merge(
                forget, anchor, k=opts["k"], base=job.model_path, out=out, mode=opts["mode"], eps=opts["eps"],
                k_rules=k_rules,
            )
            result.model, result.deltas = out, {"forget": forget, "anchor": anchor}
            result.metrics["sculpt"] = _summary(report)
        tr_a.accelerator.wait_for_everyone()
        return result
