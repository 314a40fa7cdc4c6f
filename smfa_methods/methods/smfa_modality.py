"""SMFA with per-modality forget deltas (the `smfa` method's `per_modality` option): ΔW_f^img
trained on the image-memory forget items and ΔW_f^txt on the text-memory ones (the
benchmark's `task`, else whether an item has an image), each with D_r^few as in Eq. 4, each sculpted against the same anchor with
its own k, then summed and merged:

    θ = θ_o + sculpt(ΔW_f^img, ΔW_a; k_image) + sculpt(ΔW_f^txt, ΔW_a; k_text)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..data import Example, ExampleDataset
from ..errors import MethodError
from ..job import Job, Result

if TYPE_CHECKING:
    from ..method import Method


def modality_of(ex: Example) -> str:
    """"image" or "text": the benchmark's `task` (image_memory / text_memory) when the item
    has one, else whether it shows an image."""
    task = ex.extra.get("task")
    if task in ("image_memory", "text_memory"):
        return task.split("_")[0]
    return "image" if ex.image is not None else "text"


def split_by_modality(forget: list[Example]) -> dict[str, list[Example]]:
    """{"image": image-memory items, "text": text-memory items}; both must be non-empty."""
    groups = {g: [ex for ex in forget if modality_of(ex) == g] for g in ("image", "text")}
    empty = [g for g, exs in groups.items() if not exs]
    if empty:
        raise MethodError(f"smfa per_modality: the forget set has no {' and no '.join(empty)}-memory items "
                          "(task image_memory / text_memory, else with / without an image); "
                          "use per_modality=false")
    return groups


def run_per_modality(method: Method, job: Job, opts: dict, k_rules: list[str]) -> Result:
    """Train the two forget deltas and the anchor, sculpt each forget delta with its own k,
    sum, merge (see the module doc)."""
    import smfa_core

    from .idk import with_refusals
    from .smfa_stages import sum_deltas
    from .smfa_stages import summary as _summary
    from .smfa_stages import train_and_export as _train_and_export

    relabelled = with_refusals(job.forget, job.train.seed)  # the refusal each item gets without the split
    groups = split_by_modality(relabelled)
    ks = {"image": opts["k_image"] if opts["k_image"] >= 0 else opts["k"],
          "text": opts["k_text"] if opts["k_text"] >= 0 else opts["k"]}
    deltas, metrics = {}, {}
    for g, exs in groups.items():
        trainer, _, path, metrics[f"forget_{g}"], whole = _train_and_export(
            method, job, ExampleDataset(exs + list(job.retain)), f"forget_{g}")
        deltas[f"forget_{g}"] = path
        del trainer, whole  # free each model before training the next
    tr_a, _, anchor, metrics["anchor"], _ = _train_and_export(method, job, ExampleDataset(job.retain), "anchor")
    result = Result(metrics=metrics)
    if tr_a.is_world_process_zero():
        sculpted, metrics["sculpt"] = [], {}
        for g in groups:
            dst = job.out / f"sculpted_{g}"
            rep = smfa_core.sculpt(str(deltas[f"forget_{g}"]), str(anchor), k=ks[g], base=str(job.model_path),
                                   out=str(dst), emit="delta", delta_dtype="fp32", mode=opts["mode"],
                                   eps=opts["eps"], overwrite=True, k_rules=k_rules or None)
            metrics["sculpt"][g] = {**_summary(rep.as_dict()), "k": ks[g]}
            sculpted.append(dst)
        total = sum_deltas(sculpted, job.out / "sculpted_sum")
        out = job.out / "model"
        smfa_core.merge(str(job.model_path), str(total), out=str(out), overwrite=True)
        result.model, result.deltas = out, {**deltas, "anchor": anchor, "sculpted": total}
    tr_a.accelerator.wait_for_everyone()
    return result
