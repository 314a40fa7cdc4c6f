"""The one training loop: a `transformers.Trainer` whose loss comes from the method.

Gradient accumulation, bf16/fp16, checkpoint/resume, logging and multi-process training
(DDP, FSDP, DeepSpeed through accelerate) are the Trainer's; we only supply the loss, the
data, the reference model when a method needs one, and the export at the end.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from . import models
from .collators import PairedCollator, SFTCollator
from .data import PairedDataset
from .distributed import whole_model
from .errors import MethodError, MethodFailed, TrainingDiverged
from .job import Job, Result, TrainConfig, accelerator_available
from .progress import ProgressCallback

if TYPE_CHECKING:  # the loop runs any object with the Method protocol; method.py imports this module
    from torch.utils.data import Dataset

    from .method import Method


class UnlearnTrainer(Trainer):
    """Trainer whose `compute_loss` is `method.compute_loss(model, inputs, trainer)`."""

    def __init__(
        self, *args, method: Method, method_options: dict | None = None,
        ref_model: torch.nn.Module | None = None, **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.method = method
        self.method_options = method.resolve_options({}) if method_options is None else method_options
        self.ref_model = ref_model
        # Method losses are batch means, never normalised by num_items_in_batch: let the
        # Trainer divide by the accumulation steps (a step's loss is the mean of its
        # micro-batch means; equal to the one-big-batch loss when the micro-batches hold
        # as many answer tokens).
        self.loss_is_scaled_for_ga = False
        self._parts: dict[str, list[torch.Tensor]] = {}
        self._step_losses: list[torch.Tensor] = []  # this optimizer step's micro-batch losses

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        try:
            loss = self.method.compute_loss(model, inputs, self)
        except MethodError:
            raise
        except Exception as exc:  # a plugin's bug: name it; the traceback is the cause (--debug)
            raise MethodFailed(f"method {self.method.name!r} failed at step {self.state.global_step + 1}: "
                               f"{type(exc).__name__}: {exc}") from exc
        return (loss, None) if return_outputs else loss

    def training_step(self, *args, **kwargs) -> torch.Tensor:
        loss = super().training_step(*args, **kwargs)
        self._step_losses.append(loss.detach())  # checked with the gradient norm: one sync per step
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        # The Trainer's hook between the backward passes and optimizer.step(): the one point
        # where a NaN can still be stopped before it reaches the weights.
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        check_finite_step(self, grad_norm)
        return grad_norm

    def record(self, **parts: torch.Tensor) -> None:
        """Methods report loss components here; they are averaged into the next log line
        (kept as tensors until then: no device sync per step)."""
        for k, v in parts.items():
            self._parts.setdefault(k, []).append(v.detach().float())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._parts and "loss" in logs:
            for k, vs in self._parts.items():
                logs[k] = round(torch.stack(vs).mean().item(), 6)
            self._parts = {}
        super().log(logs, start_time)

    @contextlib.contextmanager
    def reference_model(self, model: torch.nn.Module):
        """The original model, to call under no_grad. Under LoRA: the same model with its
        adapter disabled (no second copy in memory); under full fine-tuning: the frozen copy."""
        inner = self.accelerator.unwrap_model(model)
        if hasattr(inner, "disable_adapter"):
            with inner.disable_adapter():
                yield inner
            return
        if self.ref_model is None:
            raise RuntimeError(f"method {self.method.name!r} needs a reference model (needs_reference=True)")
        yield self.ref_model

    @torch.no_grad()
    def reference_logits(self, model: torch.nn.Module, inputs: dict) -> torch.Tensor:
        """Logits of the original model (see reference_model)."""
        with self.reference_model(model) as ref:
            return ref(**inputs).logits


def check_finite_step(trainer: UnlearnTrainer, grad_norm: float | torch.Tensor | None) -> None:
    """Raise TrainingDiverged when this step's loss or gradient norm is NaN/Inf, naming the
    step, the loss and its recorded components, the method, and the checkpoint kept."""
    losses = torch.stack(trainer._step_losses) if trainer._step_losses else torch.zeros(1)
    trainer._step_losses = []
    gn = torch.as_tensor(0.0 if grad_norm is None else grad_norm, dtype=torch.float32, device=losses.device)
    bad = (~torch.isfinite(losses)).any() | ~torch.isfinite(gn)
    if trainer.accelerator.num_processes > 1:  # every process stops together, or the others hang
        bad = trainer.accelerator.reduce(bad.float(), reduction="sum") > 0
    if not bool(bad):
        return
    parts = {k: round(float(v[-1]), 6) for k, v in trainer._parts.items() if v}
    loss = ", ".join(f"{float(x):.6g}" for x in losses)
    kept = latest_checkpoint(Path(trainer.args.output_dir))
    raise TrainingDiverged(
        f"method {trainer.method.name!r}: non-finite training at step {trainer.state.global_step + 1} "
        f"(loss {loss}; gradient norm {float(gn):.6g}; components {parts or 'none recorded'}); stopped before "
        f"the optimizer step, no model written; " + (f"last good checkpoint kept: {kept}" if kept else
                                                       "no checkpoint was saved (--save-steps)"))


def training_arguments(cfg: TrainConfig, output_dir: Path) -> TrainingArguments:
    """The HF TrainingArguments of a TrainConfig (validated), with the settings the training loop relies on."""
    cfg.validate()
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps or cfg.warmup_ratio,  # transformers reads a float < 1 as a ratio
        max_grad_norm=cfg.max_grad_norm,
        adam_beta2=cfg.adam_beta2,
        **_schedule(cfg),
        seed=cfg.seed,
        bf16=cfg.bf16,
        fp16=cfg.fp16,
        # Say "CPU" outright on a GPU-less host: only then does accelerate set up multi-process
        # CPU DDP (gloo) under torchrun instead of N independent runs, and TrainingArguments
        # accept bf16 (CPU autocast).
        use_cpu=not accelerator_available(),
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        logging_steps=cfg.logging_steps,
        report_to=cfg.report_to,
        remove_unused_columns=False,  # batches are nested {"forget": ..., "retain": ...}
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        ddp_find_unused_parameters=False,
        disable_tqdm=True,
    )


def _schedule(cfg: TrainConfig) -> dict:
    """The Trainer's scheduler arguments: constant (with warm-up when asked) or cosine down to
    min_lr_ratio x lr."""
    warm = bool(cfg.warmup_steps or cfg.warmup_ratio)
    if cfg.scheduler == "cosine":
        return {"lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": cfg.min_lr_ratio}}
    return {"lr_scheduler_type": "constant_with_warmup" if warm else "constant"}


def default_collator(dataset: Dataset, processor: Any, max_length: int | None = None) -> SFTCollator:
    """Paired batches for a PairedDataset, plain ones otherwise; `max_length` None = no limit."""
    cls = PairedCollator if isinstance(dataset, PairedDataset) else SFTCollator
    return cls(processor, max_length=max_length)


def latest_checkpoint(run_dir: Path) -> str | None:
    """The newest run_dir/checkpoint-N (by step number) to resume from, or None."""
    cks = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(cks[-1]) if cks else None


def _progress_desc(method: Method, run_dir: Path) -> str:
    """The progress label: the method, plus the stage when a method trains more than once
    (SMFA's out/checkpoints/forget and .../anchor)."""
    return method.name if run_dir.name == "checkpoints" else f"{method.name}/{run_dir.name}"


def fit(
    method: Method, job: Job, dataset: Dataset, run_dir: Path, callbacks: list[TrainerCallback] | None = None,
) -> tuple[UnlearnTrainer, models.Loaded, dict | None]:
    """Load the model, set up LoRA/full training, train on `dataset` with the method's loss
    (the Trainer also gets the method's `trainer_callbacks(job)` and `callbacks`). Returns
    the trainer (its .model is trained), the loaded checkpoint, and for full fine-tuning the
    original trainable weights (the reference for the dense delta)."""
    from transformers import set_seed

    cfg = job.train
    cfg.validate()
    set_seed(cfg.seed)  # LoRA init draws random numbers before the Trainer seeds
    loaded = models.load_model(job.model_path, dtype=torch.float32)
    base = loaded.model
    ref = None
    if method.needs_reference and cfg.mode != "lora":
        ref = copy.deepcopy(base).eval().requires_grad_(False)
    model = models.prepare_for_training(
        base, cfg.mode, target=cfg.target or models.LANGUAGE_LINEAR, lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha
    )
    original = models.trainable_snapshot(model) if cfg.mode != "lora" else None
    args = training_arguments(cfg, run_dir)
    if ref is not None:
        ref.to(args.device)
    trainer = UnlearnTrainer(
        model=model, args=args, train_dataset=dataset,
        data_collator=default_collator(dataset, loaded.processor, cfg.max_length or None), method=method,
        method_options=method.resolve_options(job.options), ref_model=ref,
        callbacks=[*method.trainer_callbacks(job), *(callbacks or []),
                   ProgressCallback(enabled=cfg.progress, desc=_progress_desc(method, run_dir))],
    )
    trainer.remove_callback(PrinterCallback)  # its raw log dicts: ProgressCallback prints the progress
    resume = latest_checkpoint(run_dir) if cfg.resume else None
    trainer.train(resume_from_checkpoint=resume)
    return trainer, loaded, original


def train_method(method: Method, job: Job) -> Result:
    """The default run: train with the method's loss; export the delta (out/delta) and the
    final model (out/model, LoRA merged in)."""
    trainer, loaded, original = fit(method, job, method.make_dataset(job), job.out / "checkpoints")
    result = Result(metrics=final_metrics(trainer))
    model = whole_model(trainer, job)  # the main process's; a collective under FSDP2 / ZeRO-3
    if model is not None:
        result.deltas["delta"] = models.export_delta(model, job.out / "delta", original=original)
        result.model = models.save_final(model, loaded.processor, job.out / "model")
    trainer.accelerator.wait_for_everyone()
    return result


def final_metrics(trainer: Trainer) -> dict:
    """Step count, last loss log line, and truncation counts summed over processes (a
    collective: every process must call this)."""
    hist = [h for h in trainer.state.log_history if "loss" in h]
    out = {"global_step": trainer.state.global_step, "last_log": hist[-1] if hist else {}}
    enc = getattr(trainer.data_collator, "encoder", None)
    if enc is not None:
        counts = torch.tensor([enc.truncated_prompts, enc.truncated_answers], device=trainer.args.device)
        prompts, answers = trainer.accelerator.reduce(counts, reduction="sum").tolist()
        out["truncated"] = {"prompts": int(prompts), "answers": int(answers)}
    return out
