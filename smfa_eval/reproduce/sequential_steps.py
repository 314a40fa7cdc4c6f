"""The reproduction's sequential run ([protocol] sequential = N): every chosen method gets the
ablation split's forget profiles as N requests, each unlearned from the previous request's
model and evaluated (paraphrased questions), as resumable steps

    sequential/SPLIT/METHOD/requestI        the unlearned model of request I
    sequential/SPLIT/METHOD/requestI-eval   its evaluation

and records with "request": I (smfa_eval/sequential.py) in results.json."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ..schema import Bench

if TYPE_CHECKING:
    from .pipeline import Reproduction


def sequential_steps(rep: Reproduction, bench: Bench, original: Path, split: str) -> list[dict]:
    """Apply each method's forget requests on `split` in turn, evaluating after each; returns the records."""
    from ..sequential import request_groups, sequential_records, write_request_files
    from .labels import ORIGINAL, method_settings, step_label

    p, pr = rep.preset, rep.preset.protocol
    groups = request_groups(bench.split(split).forget, pr.sequential)
    files = write_request_files(bench, split, groups, rep.out / "sequential" / split / "requests", pr.sequential_forget)
    start = rep.out / "eval" / split / step_label(ORIGINAL) / "paraphrase" / "items.jsonl"
    records: list[dict] = []
    for method in pr.sequential_methods or tuple(p.methods):
        lr, opts = method_settings(p, method)
        common = dict(model=method, split=split, groups=groups, mode=pr.sequential_forget, seed=rep.seed,
                      k=opts.get("k") if method == "smfa" else None)
        records += sequential_records(start, request=0, **common)
        current, reads = original, rep._model_reads
        for i, forget in enumerate(files, 1):
            name = f"sequential/{split}/{method}/request{i}"
            cfg = {"method": method, "lr": lr, "options": opts, "request": i, "groups": groups,
                   "forget": pr.sequential_forget, "seed": rep.seed}
            d = rep.steps.run(name, cfg, partial(_unlearn, method=method, model=current, bench=bench, split=split,
                                                 lr=lr, options=opts, forget=forget, rep=rep, step=name), reads=reads)
            current, reads = d / "model", (*reads, name)
            e = rep.steps.run(f"{name}-eval", {"limit": pr.eval_limit, "max_new_tokens": pr.max_new_tokens},
                              partial(_evaluate, bench=bench, split=split, model=current, label=method, rep=rep),
                              reads=reads)
            records += sequential_records(e / "items.jsonl", request=i, **common)
    return records


def _evaluate(tmp: Path, *, bench: Bench, split: str, model: Path, label: str, rep: Reproduction) -> None:
    from ..evaluate import run_eval
    from ..judges import get_judge

    pr = rep.preset.protocol
    run_eval(bench.root, split, tmp, judge=get_judge("heuristic"), judge_name="heuristic", model=str(model),
             batch_size=16, max_new_tokens=pr.max_new_tokens, limit=pr.eval_limit, method=label,
             progress=rep._bars())


def _unlearn(tmp: Path, *, method: str, model: Path, bench: Bench, split: str, lr: float, options: dict,
             forget: Path, rep: Reproduction, step: str) -> dict:
    from .training import unlearn_run

    return unlearn_run(method, model, bench, split, tmp, rep.preset.unlearn, lr=lr, options=options, seed=rep.seed,
                       progress=rep.progress, forget=forget, launch=rep.preset.launch, step=step)
