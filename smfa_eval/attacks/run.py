"""`smfa attack KIND`: make the attacked model (or benchmark), then evaluate it like any model."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..schema import Bench
from . import AttackError, finished, method_label, record
from .quantize import BACKEND as QUANTIZE_BACKEND

KINDS = ("relearn", "quantize", "perturb")
# `smfa attack`'s defaults by attacked-model suffix (what `smfa bench run --attack` uses)
ATTACK_PARAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "relearn": ("relearn", {"steps": 20, "lr": 1e-4, "fraction": 0.5, "batch_size": 4, "mode": "full", "seed": 0}),
    "int8": ("quantize", {"bits": 8, "group_size": 32}),
    "int4": ("quantize", {"bits": 4, "group_size": 32}),
    "perturb": ("perturb", {"seed": 0}),
}


def attack_name(kind: str, params: dict) -> str:
    """The suffix of the attacked model's label: relearn, int8, int4, perturb."""
    return f"int{params['bits']}" if kind == "quantize" else kind


def run_attack(kind: str, model: Path, data: Path, split: str, out: Path, *, params: dict[str, Any],
               eval_kw: dict[str, Any], label: str | None = None, progress: bool | None = None,
               log: Callable[[str], None] = print) -> dict:
    """Attack `model` (see the package doc), evaluate into OUT/eval; returns the eval summary.
    `params`: the attack's own settings; `eval_kw`: run_eval's keyword arguments (judge, limit, ...)."""
    from ..evaluate import run_eval

    if kind not in KINDS:
        raise AttackError(f"unknown attack {kind!r}; one of {', '.join(KINDS)}")
    if not (model / "config.json").is_file():
        raise AttackError(f"--model {model}: not a transformers model directory (no config.json)")
    bench = Bench(data)
    bench.split(split)  # a bad split or option fails before any work
    if kind == "relearn" and not 0.0 < params["fraction"] < 1.0:
        raise AttackError(f"--fraction must be in (0, 1), got {params['fraction']}")
    if kind == "quantize" and params["bits"] not in (4, 8):
        raise AttackError(f"--bits must be 8 or 4, got {params['bits']}")
    name = f"{label or method_label(model)}+{attack_name(kind, params)}"
    settings = {"attack": kind, "model": str(model.resolve()), "data": str(bench.root.resolve()), "split": split,
                **params, **({"backend": QUANTIZE_BACKEND} if kind == "quantize" else {})}
    out.mkdir(parents=True, exist_ok=True)
    result = finished(out, settings)
    if result is None:
        log(f"{name}: attacking -> {out}")
        result = _make(kind, model, bench, split, out, params, progress)
        record(out, settings, result)
    else:
        log(f"{name}: reusing the attacked {'benchmark' if kind == 'perturb' else 'model'} in {out}")
    attacked = model if kind == "perturb" else out / "model"
    eval_data = out / "bench" if kind == "perturb" else bench.root
    return run_eval(eval_data, split, out / "eval", model=str(attacked), method=name,
                    exclude=result.get("excluded", []), progress=bool(progress), **eval_kw)


def _make(kind: str, model: Path, bench: Bench, split: str, out: Path, params: dict, progress: bool | None) -> dict:
    if kind == "quantize":
        from .quantize import quantize_checkpoint

        tmp = out / ".model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        info = quantize_checkpoint(model, tmp, params["bits"], params["group_size"])
        shutil.rmtree(out / "model", ignore_errors=True)
        tmp.rename(out / "model")
        return info
    if kind == "relearn":
        from .relearn import relearn

        _, excluded, info = relearn(model, bench, split, out / "relearn", steps=params["steps"], lr=params["lr"],
                                    fraction=params["fraction"], batch_size=params["batch_size"],
                                    mode=params["mode"], seed=params["seed"], progress=progress)
        if (out / "model").exists():
            shutil.rmtree(out / "model")
        (out / "relearn" / "model").rename(out / "model")
        return {**info, "excluded": excluded}
    from .perturb import perturbed_bench

    return perturbed_bench(bench, split, out / "bench", params["seed"])
