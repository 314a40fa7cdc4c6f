"""SMFA (§3): MFA = fine-tune on D_f^idk ∪ D_r^few (Eq. 4), retaining anchor = fine-tune on
D_r^few, then sculpt the MFA with the anchor (k, mode) and merge. Both deltas are kept
(out/forget, out/anchor) so `smfa sculpt` can re-sculpt with another k without retraining.
`mfa` is the unsculpted ablation: the MFA merged as is."""

from __future__ import annotations

from smfa_core._ops import MODES
from smfa_core.tensor_api import MAX_K

from ..data import ExampleDataset
from ..losses import ce
from ..method import Job, Method, Result
from ..options import Option
from ..sculpting import sculpt_and_merge
from .idk import with_refusals


def _train_and_export(method: Method, job: Job, dataset, stage: str):
    from .. import models
    from ..trainer import _final_metrics, fit

    trainer, loaded, original = fit(method, job, dataset, job.out / "checkpoints" / stage)
    path = None
    if trainer.is_world_process_zero():
        path = models.export_delta(trainer.model, job.out / stage, original=original)
    trainer.accelerator.wait_for_everyone()
    return trainer, loaded, path, _final_metrics(trainer)


class MFA(Method):
    name = "mfa"
    description = "Memory Forgetting Adapter (Eq. 4): fine-tune on D_f^idk ∪ D_r^few, merged unsculpted"
    options: dict = {}

    def mfa_dataset(self, job: Job) -> ExampleDataset:
        return ExampleDataset(with_refusals(job.forget, job.train.seed) + list(job.retain))

    def compute_loss(self, model, inputs, trainer):
        return ce(model, inputs)  # plain cross-entropy: the data carries the method

    def run(self, job: Job) -> Result:
        from .. import models

        trainer, loaded, path, metrics = _train_and_export(self, job, self.mfa_dataset(job), "forget")
        result = Result(deltas={"forget": path} if path else {}, metrics={"forget": metrics})
        if trainer.is_world_process_zero():
            result.model = models.save_final(trainer.model, loaded.processor, job.out / "model")
        trainer.accelerator.wait_for_everyone()
        return result


class SMFA(MFA):
    name = "smfa"
    description = "SMFA (§3): MFA sculpted by a retaining anchor trained on D_r^few, then merged"
    options = {
        "k": Option(1.0, "magnitude factor k in k·ρ·|ΔW_a| < |ΔW_f| (smfa sculpt --k)", min=0.0, max=MAX_K),
        "mode": Option("both", "mask rule (smfa sculpt --mode)", choices=tuple(MODES)),
        "eps": Option(1e-8, "ε in ρ = ‖ΔW_f‖/(‖ΔW_a‖+ε)", min=0.0, max=1.0),
    }

    def run(self, job: Job) -> Result:
        opts = self.resolve_options(job.options)
        tr_f, _, forget, m_f = _train_and_export(self, job, self.mfa_dataset(job), "forget")
        del tr_f  # free the first model before training the anchor
        tr_a, _, anchor, m_a = _train_and_export(self, job, ExampleDataset(job.retain), "anchor")
        result = Result(metrics={"forget": m_f, "anchor": m_a})
        if tr_a.is_world_process_zero():
            out = job.out / "model"
            report = sculpt_and_merge(
                forget, anchor, k=opts["k"], base=job.model_path, out=out, mode=opts["mode"], eps=opts["eps"]
            )
            result.model, result.deltas = out, {"forget": forget, "anchor": anchor}
            result.metrics["sculpt"] = _summary(report)
        tr_a.accelerator.wait_for_everyone()
        return result


def _summary(report: dict) -> dict:
    totals = report["totals"]
    return {"engine": "smfa_core.sculpt", "backend": report["backend"], "tensors": totals["tensors"],
            "masked_pct": totals["masked_pct"]}
