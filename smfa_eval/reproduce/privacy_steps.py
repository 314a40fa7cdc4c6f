"""The reproduction's privacy steps for one split (preset `[protocol] privacy = true`):

    oracle/SPLIT/model                     the original's stage recipe without the forget profiles
    eval/SPLIT/oracle/paraphrase/          its evaluation (a row of every table)
    attack/SPLIT/METHOD/ATTACK/            the attacked model (relearn, int8, int4) or benchmark (perturb)
    eval/SPLIT/METHOD+ATTACK/paraphrase/   its evaluation

and the records: forget quality of every model of the split against the oracle, and the
attacked models' records under the names METHOD+ATTACK (privacy_records.py). Every step is
resumable like the others (Steps); nothing here changes another step's output.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..schema import Bench
from .privacy_records import privacy_records
from .results import ceilings, records_from_items

if TYPE_CHECKING:
    from .pipeline import Reproduction

ORACLE = "oracle"
RELEARN_HELDOUT = "relearn_heldout"  # the records' phrasing of a method on the relearn attack's held-out facts
RELEARN = {"steps": 20, "fraction": 0.5, "batch_size": 4, "mode": "full", "seed": 0}


def stage_source(repro: Reproduction) -> tuple[Path, tuple[str, ...]]:
    """The model the original's stage started from, and the steps it reads."""
    from .labels import model_path

    reads = tuple(r for r in repro._model_reads if r != "original")  # set by repro.original()
    if "pretrain" in reads:
        return repro.out / "pretrain" / "model", reads
    if "base" in reads:
        return repro.out / "base", reads
    return model_path(repro.preset), reads


def oracle_model(repro: Reproduction, bench: Bench, split: str) -> tuple[Path, tuple[str, ...]]:
    """Train (or reuse) the oracle of `split`: the stage without the forget profiles; (model, reads)."""
    from .training import train_stage

    src, reads = stage_source(repro)
    stage = repro.preset.original
    forget = frozenset(bench.split(split).forget)
    cfg = {"stage": asdict(stage), "seed": repro.seed, "from": str(src), "without": sorted(forget)}
    d = repro.steps.run(f"oracle/{split}", cfg, lambda tmp: train_stage(
        bench, src, stage, tmp, seed=repro.seed, progress=repro.progress, exclude_profiles=forget,
        launch=repro.preset.launch, step=f"oracle/{split}"), reads=reads)
    return d / "model", (*reads, f"oracle/{split}")


def _eval(repro: Reproduction, bench_root: Path, model: Path, split: str, label: str, reads: tuple[str, ...],
          exclude: list[str] | None = None) -> Path:
    from ..evaluate import run_eval
    from ..judges import get_judge
    from .labels import step_label

    pr = repro.preset.protocol
    name = f"eval/{split}/{step_label(label)}/paraphrase"
    cfg = {"split": split, "label": label, "phrasing": "paraphrase", "limit": pr.eval_limit,
           "max_new_tokens": pr.max_new_tokens, "privacy": True, "exclude": exclude or []}
    return repro.steps.run(name, cfg, lambda tmp: run_eval(
        bench_root, split, tmp, judge=get_judge("heuristic"), judge_name="heuristic", model=str(model),
        batch_size=16, max_new_tokens=pr.max_new_tokens, limit=pr.eval_limit, method=label,
        progress=repro._bars(), privacy=True, exclude=exclude or []) and None, reads=reads)


def _records(repro: Reproduction, bench: Bench, d: Path, split: str, label: str) -> None:
    import json

    ceil = ceilings(bench, "eval")
    repro.records += records_from_items(d / "items.jsonl", model=label, split=split, phrasing="paraphrase",
                                        seed=repro.seed, ceiling=ceil)
    repro.records += privacy_records(json.loads((d / "summary.json").read_text()), model=label, split=split,
                                     phrasing="paraphrase", seed=repro.seed)


def attack_model(repro: Reproduction, bench: Bench, model: Path, split: str, method: str, attack: str,
                 reads: tuple[str, ...]) -> tuple[Path, Path, list[str], tuple[str, ...]]:
    """(model to evaluate, benchmark to evaluate on, excluded eval ids, reads) of one attack."""
    name = f"attack/{split}/{method.replace(':', '-')}/{attack}"
    lr = repro.preset.unlearn.lr
    cfg = {"attack": attack, "model": str(model), **(RELEARN if attack == "relearn" else {}), "lr": lr}
    if attack in ("int8", "int4"):
        from ..attacks.quantize import BACKEND

        cfg["backend"] = BACKEND

    def build(tmp: Path) -> dict:
        if attack in ("int8", "int4"):
            from ..attacks.quantize import quantize_checkpoint

            return quantize_checkpoint(model, tmp / "model", int(attack[3:]))
        if attack == "relearn":
            from ..attacks.relearn import relearn

            _, excluded, info = relearn(model, bench, split, tmp / "run", lr=lr, progress=repro.progress, **RELEARN)
            (tmp / "run" / "model").rename(tmp / "model")
            return {**info, "excluded": excluded}
        from ..attacks.perturb import perturbed_bench

        return perturbed_bench(bench, split, tmp / "bench", seed=0)

    d = repro.steps.run(name, cfg, build, reads=reads)
    info = repro.steps.records[name].get("info", {})
    attacked = model if attack == "perturb" else d / "model"
    data = d / "bench" if attack == "perturb" else bench.root
    return attacked, data, list(info.get("excluded", [])), (*reads, name)


def _k(repro: Reproduction, label: str, split: str) -> dict:
    """{"k": K} when the model's other records carry one (SMFA, its ablation rows, the
    k-sweep; the k-sweep figure reads it from every record of "smfa"), else {}."""
    k = next((r["k"] for r in repro.records if r["model"] == label and r["split"] == split and "k" in r), None)
    return {"k": k} if k is not None else {}


def _heldout_before(repro: Reproduction, split: str, method: str, attacked: Path) -> None:
    """Records of METHOD (phrasing "relearn_heldout") on exactly the forget items the relearning
    attack was evaluated on: the "before" its "after" is compared with."""
    from ..privacy import forget_memory_means, read_rows
    from .labels import step_label

    before = repro.out / "eval" / split / step_label(method) / "paraphrase" / "items.jsonl"
    ids = {r["id"] for r in read_rows(attacked / "items.jsonl")}
    for task, vals in forget_memory_means(read_rows(before), ids).items():
        for metric, v in vals.items():
            if v is not None:
                repro.records.append({"model": method, "split": split, "set": "forget", "task": task,
                                      "phrasing": RELEARN_HELDOUT, "metric": metric, "value": v, "seed": repro.seed,
                                      **_k(repro, method, split)})


def privacy_split(repro: Reproduction, bench: Bench, split: str, models: dict[str, tuple[Path, tuple[str, ...]]]) -> None:
    """Oracle, forget quality and attacks for one split. `models`: label -> (model dir, reads)
    of the methods to attack (the main rows); their evaluations must already be in eval/."""
    from .. import privacy_metrics as M
    from ..privacy import forget_truth_ratios
    from .labels import step_label

    if "holdout_qa" not in bench.manifest.files:
        repro.log("privacy: the benchmark has no holdout profiles ([bench] holdout = N): MIA AUCs are not computed")
    om, oreads = oracle_model(repro, bench, split)
    od = _eval(repro, bench.root, om, split, ORACLE, oreads)
    _records(repro, bench, od, split, ORACLE)
    ref = forget_truth_ratios(od / "items.jsonl")
    for label in {r["model"] for r in repro.records if r["split"] == split and r["model"] != ORACLE}:
        items = repro.out / "eval" / split / step_label(label) / "paraphrase" / "items.jsonl"
        trs = forget_truth_ratios(items) if items.is_file() else []
        if trs and ref:
            repro.records.append({"model": label, "split": split, "set": "forget", "task": "all",
                                  "phrasing": "paraphrase", "metric": "forget_quality", "seed": repro.seed,
                                  "value": round(M.forget_quality(trs, ref), 6), **_k(repro, label, split)})
    for method, (model, reads) in models.items():
        for attack in repro.preset.protocol.attacks:
            label = f"{method}+{attack}"
            attacked, data, excluded, areads = attack_model(repro, bench, model, split, method, attack, reads)
            d = _eval(repro, data, attacked, split, label, areads, excluded)
            _records(repro, bench, d, split, label)
            if attack == "relearn":
                _heldout_before(repro, split, method, d)
                # the held-out facts depend on the seed only: the original's are the same for every method
                if not any(r["model"] == "original" and r["phrasing"] == RELEARN_HELDOUT and r["split"] == split
                           for r in repro.records):
                    _heldout_before(repro, split, "original", d)
            trs = forget_truth_ratios(d / "items.jsonl")
            if trs and ref:
                repro.records.append({"model": label, "split": split, "set": "forget", "task": "all",
                                      "phrasing": "paraphrase", "metric": "forget_quality", "seed": repro.seed,
                                      "value": round(M.forget_quality(trs, ref), 6)})
