"""Task vector negation: fine-tune on the forget set, then subtract the scaled delta."""

from __future__ import annotations

from ..data import ExampleDataset
from ..job import Job, Result
from ..losses import ce
from ..method import Method
from ..options import Option


class TaskVector(Method):
    """τ = θ_ft - θ_o from fine-tuning on D_f (plain CE descent: L = CE(D_f)); the result is
    θ_o - α·τ, merged by the streaming core (`smfa merge --scale -α`: one fp32 add, one
    rounding, no new kernel). Ilharco et al. 2023, "Editing Models with Task Arithmetic" (ICLR)."""

    name = "task_vector"
    description = "Task vector negation: fine-tune on D_f, merge the original with the delta scaled by -α"
    equation = "θ = θ_o - α·(θ_ft - θ_o),  θ_ft = argmin CE(D_f)"
    paper = "Ilharco et al. 2023, Editing Models with Task Arithmetic (ICLR)"
    options = {"alpha": Option(1.0, "α: θ = θ_o - α·Δ", min=0.0, max=1e3)}

    def make_dataset(self, job: Job):
        return ExampleDataset(job.forget)

    def compute_loss(self, model, inputs, trainer):
        lf = ce(model, inputs)
        trainer.record(forget_ce=lf)
        return lf

    def run(self, job: Job) -> Result:
        import smfa_core

        from .. import models
        from ..distributed import whole_model
        from ..trainer import final_metrics, fit

        opts = self.resolve_options(job.options)
        trainer, _, original = fit(self, job, self.make_dataset(job), job.out / "checkpoints")
        result = Result(metrics=final_metrics(trainer))
        model = whole_model(trainer, job)  # the main process's; a collective under FSDP2 / ZeRO-3
        if model is not None:
            delta = models.export_delta(model, job.out / "delta", original=original)
            out = job.out / "model"
            smfa_core.merge(str(job.model_path), str(delta), out=str(out), scale=-opts["alpha"], overwrite=True)
            result.model, result.deltas = out, {"delta": delta}
        trainer.accelerator.wait_for_everyone()
        return result
