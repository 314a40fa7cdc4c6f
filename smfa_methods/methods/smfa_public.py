"""SMFA as the public re-implementation has it (the `smfa` method's `variant = "public"`).

Source read (not copied): Open-MMUnlearning (Chen et al., "Open-MMUnlearning: Unifying Methods
and Evaluation for MLLM Unlearning", arXiv 2610.10358), github.com/JunkaiChen1/Open-MMunlearning:
`src/trainer/unlearn/smfa.py` (training), `src/model/__init__.py` (`_sculpt_smfa_delta`,
`_load_smfa_artifact`: sculpt and merge), `configs/trainer/SMFA.yaml` (multi_k 5, text_k 10,
lr 1e-4, 5 epochs), `configs/experiment/unlearn/mllmubench/{default,smfa_llava7b}.yaml` (LoRA
r 16 on every linear, retain = the whole retain split `retain_90`, text-only views on). Its
paper reports SMFA's Model Utility at 0.148 on MLLMU-Bench forget 10 % (Table 2; the other
methods but GA score 0.38-0.45), the collapse of general understanding that issue 16 cites.
What it does, and what this module does the same way:

- Three adapters in ONE training run (one optimizer, one LR schedule, one gradient clip over
  all of them): ΔW_f^multi, ΔW_f^text and the anchor ΔW_a. Every step takes a batch of
  forget items with refusal targets, each paired with a retain item (the loader is anchored
  on the forget set, so an epoch is |D_f| / batch steps and the anchor sees that many retain
  items), and sums six losses, each divided by 6:
      ΔW_f^multi: CE(D_f^idk)      + CE(D_r)          (the items as they are)
      ΔW_f^text:  CE(text(D_f^idk)) + CE(text(D_r))    (the same items, image removed)
      ΔW_a:       CE(D_r)          + CE(text(D_r))
  "text(x)" is the re-implementation's text-only view: the same question and answer without
  the image. So the two forget adapters are two *views* of every forget item, not a split of
  the items by task (that is `per_modality`). On this benchmark the text-memory items have
  no image and look the same in both views. We sum the six losses and backpropagate once
  (the re-implementation calls backward six times: the same gradient).
- The anchor is trained *jointly*: in that same run and objective, on the retain data the
  method is given (the re-implementation gives it the whole retain split; the reproduction's
  `smfa:public` row does the same), not separately on D_r^few as in the paper's §3.
- Each forget delta is sculpted against the one anchor with its own k (mask of §3, ρ per
  tensor = ‖ΔW_f^view‖_F / (‖ΔW_a‖_F + ε), the same per-tensor rule as `smfa`), THEN the two
  sculpted deltas are averaged and merged once:
      θ = θ_o + ½ [sculpt(ΔW_f^multi, ΔW_a; k_image) + sculpt(ΔW_f^text, ΔW_a; k_text)]
  (the mask comes before the average, in the re-implementation's loader).
  `k_image` is the multimodal view's k, `k_text` the text view's (-1 = `k`); the
  re-implementation's defaults are 5 and 10.

Not reproduced: its retain partner is redrawn at random on every access, ours is fixed per
forget index from the seed (`PairedDataset`); it stores LoRA only, this also trains `--full` /
`--all-params` (three copies of the trainable model). One process only: the six forwards
before one backward do not go through DDP / FSDP, so a multi-process launch is refused.
"""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..data import Example, PairedDataset
from ..errors import MethodError
from ..job import Job, Result
from ..method import Method

if TYPE_CHECKING:
    from ..trainer import UnlearnTrainer

BRANCHES = ("forget_multi", "forget_text", "anchor")
# (branch, batch role): the six losses of one joint step
STAGES = (("forget_multi", "forget"), ("forget_multi", "retain"),
          ("forget_text", "forget_text"), ("forget_text", "retain_text"),
          ("anchor", "retain"), ("anchor", "retain_text"))


def text_view(ex: Example) -> Example:
    """The re-implementation's text-only view: the same question and answer, no image."""
    return replace(ex, image=None) if ex.image is not None else ex


class ViewPairedDataset(PairedDataset):
    """PairedDataset (forget anchored, a fixed retain partner per forget index) whose items
    also carry the text-only view of both: {"forget", "retain", "forget_text", "retain_text"}."""

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        return {**item, "forget_text": text_view(item["forget"]), "retain_text": text_view(item["retain"])}


class JointBranches(torch.nn.Module):
    """The three trainable branches of one model, trained in one run. LoRA: one PeftModel
    with three adapters (one frozen base in memory), switched per forward. Full / all: three
    copies of the prepared model (the first is the model itself)."""

    def __init__(self, model: torch.nn.Module, lora: bool) -> None:
        super().__init__()
        self.lora = lora
        if lora:
            first = model.active_adapter
            cfg = copy.deepcopy(model.peft_config[first])
            for name in BRANCHES:  # fresh adapters under our names, drawn from the seeded RNG in order
                model.add_adapter(name, copy.deepcopy(cfg))
            self.peft = model
            self._activate(BRANCHES[0])
            model.delete_adapter(first)
        else:
            self.branches = torch.nn.ModuleDict({b: model if i == 0 else copy.deepcopy(model)
                                                 for i, b in enumerate(BRANCHES)})

    def _activate(self, branch: str) -> None:
        # PEFT's set_adapter freezes the other adapters; they must stay trainable (in the one
        # optimizer) for their own losses of the same step.
        self.peft.set_adapter(branch)
        for n, p in self.peft.named_parameters():
            if "lora_" in n and any(f".{b}." in n for b in BRANCHES):
                p.requires_grad_(True)

    def module_for(self, branch: str) -> torch.nn.Module:
        if branch not in BRANCHES:
            raise MethodError(f"smfa public: no branch {branch!r}")
        if self.lora:
            self._activate(branch)
            return self.peft
        return self.branches[branch]

    def forward(self, branch: str, **inputs):
        return self.module_for(branch)(**inputs)

    def export(self, branch: str, out: Path, original: dict | None) -> Path:
        """The branch's delta at `out`: a PEFT adapter dir (LoRA), else delta.safetensors."""
        from .. import models

        if not self.lora:
            return models.export_delta(self.branches[branch], out, original=original)
        import shutil

        # PEFT writes a non-"default" adapter to SAVE_DIR/NAME (and a model card to SAVE_DIR)
        tmp = out.parent / f".{out.name}.peft"
        self.peft.save_pretrained(str(tmp), selected_adapters=[branch])
        shutil.rmtree(out, ignore_errors=True)
        (tmp / branch).rename(out)
        shutil.rmtree(tmp)
        return out


class JointLoss(Method):
    """The loss of one joint step (see STAGES): the mean of the six cross-entropies."""

    name = "smfa"

    def compute_loss(self, model, inputs, trainer):
        losses = {f"{b}/{role}": model(branch=b, **inputs[role]).loss for b, role in STAGES}
        trainer.record(**{k.replace("/", "_"): v for k, v in losses.items()})
        return torch.stack(list(losses.values())).mean()


def _refuse_multi_process() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise MethodError("smfa variant=public trains its three adapters in one process (six forwards before one "
                          "backward do not go through DDP/FSDP); launch it without torchrun/accelerate")


def fit_joint(job: Job, dataset: ViewPairedDataset, run_dir: Path, options: dict
              ) -> tuple[UnlearnTrainer, dict[str, torch.Tensor] | None]:
    """Load the model, make the three branches, train them in one run. Returns (trainer,
    original trainable weights for a dense delta, None under LoRA)."""
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback

    from .. import models
    from ..collators import PairedCollator
    from ..progress import ProgressCallback
    from ..trainer import UnlearnTrainer, latest_checkpoint, training_arguments

    cfg = job.train
    set_seed(cfg.seed)  # LoRA init draws random numbers before the Trainer seeds
    loaded = models.load_model(job.model_path, dtype=torch.float32)
    model = models.prepare_for_training(loaded.model, cfg.mode, target=cfg.target or models.LANGUAGE_LINEAR,
                                        lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha)
    original = models.trainable_snapshot(model) if cfg.mode != "lora" else None
    joint = JointBranches(model, lora=cfg.mode == "lora")
    trainer = UnlearnTrainer(
        model=joint, args=training_arguments(cfg, run_dir), train_dataset=dataset,
        data_collator=PairedCollator(loaded.processor, max_length=cfg.max_length or None), method=JointLoss(),
        method_options=options, callbacks=[ProgressCallback(enabled=cfg.progress, desc="smfa/joint")],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=latest_checkpoint(run_dir) if cfg.resume else None)
    return trainer, original


def run_public(method: Method, job: Job, opts: dict, k_rules: list[str]) -> Result:
    """Train the three branches jointly, sculpt each forget delta with its own k, average,
    merge (see the module doc)."""
    import smfa_core

    from ..trainer import final_metrics
    from .idk import with_refusals
    from .smfa_stages import sum_deltas
    from .smfa_stages import summary as _summary

    _refuse_multi_process()
    ks = {"multi": opts["k_image"] if opts["k_image"] >= 0 else opts["k"],
          "text": opts["k_text"] if opts["k_text"] >= 0 else opts["k"]}
    dataset = ViewPairedDataset(with_refusals(job.forget, job.train.seed), job.retain, seed=job.train.seed)
    trainer, original = fit_joint(job, dataset, job.out / "checkpoints" / "joint", opts)
    joint = trainer.accelerator.unwrap_model(trainer.model)
    deltas = {b: joint.export(b, job.out / b, original) for b in BRANCHES}
    metrics: dict = {"joint": final_metrics(trainer), "sculpt": {}}
    del trainer, joint, original  # free the three branches before sculpting
    sculpted = []
    for view in ("multi", "text"):
        dst = job.out / f"sculpted_{view}"
        rep = smfa_core.sculpt(str(deltas[f"forget_{view}"]), str(deltas["anchor"]), k=ks[view],
                               base=str(job.model_path), out=str(dst), emit="delta", delta_dtype="fp32",
                               mode=opts["mode"], eps=opts["eps"], overwrite=True, k_rules=k_rules or None)
        metrics["sculpt"][view] = {**_summary(rep.as_dict()), "k": ks[view]}
        sculpted.append(dst)
    mean = sum_deltas(sculpted, job.out / "sculpted_mean", scale=0.5)
    out = job.out / "model"
    smfa_core.merge(str(job.model_path), str(mean), out=str(out), overwrite=True)
    return Result(model=out, deltas={**deltas, "sculpted": mean}, metrics=metrics)
