"""`smfa reproduce --tune --seed DEV`: the fair-comparison grid, on a development seed only.

Every method gets the same budget ([unlearn]: epochs, batch size, training mode) and the
same grid of learning rates; SMFA is also swept over k by re-sculpting the deltas of each
learning rate (no retraining), MANU (which does not train) over its pruning share. The rule,
fixed before any test-seed number exists: among the settings that keep retain memory and
image understanding at or above the floors ([tune] retain_floor / understanding_floor times
the original's Fact), pick the one that forgets most (lowest mean forget-memory Fact; ties:
more retain). When no setting meets the floors, pick the one that keeps most (highest
min(retain ratio, understanding ratio)) and say so. The outcome goes into TUNE_OUT/selected.toml,
to be committed into the preset's [methods] with TUNE_OUT/tune.md, the table that justified it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .cells import memory_fact
from .labels import ORIGINAL, method_settings
from .pipeline import Reproduction
from .preset import Preset
from .results import value, write_results
from .runinfo import dump_json


def _understanding(records: list[dict], model: str, split: str) -> float | None:
    vals = [value(records, model=model, split=split, set=s, task="image_understanding", phrasing="paraphrase",
                  metric="fact") for s in ("forget", "retain")]
    return None if None in vals else sum(vals) / 2  # type: ignore[arg-type]


def score(records: list[dict], label: str, split: str) -> dict:
    """One model's forget and retain memory Fact and understanding scores, as the tuning compares them."""
    return {"forget": memory_fact(records, label, split, "forget"), "retain": memory_fact(records, label, split, "retain"),
            "understanding": _understanding(records, label, split)}


def select(cands: list[dict], orig: dict, retain_floor: float, understanding_floor: float) -> dict:
    """The rule of the module docstring over candidates {"label", "settings", "forget", "retain", "understanding"}."""
    if not cands:
        raise ValueError("no candidate settings to select from")

    def ratios(c: dict) -> tuple[float, float]:
        return c["retain"] / max(orig["retain"], 1e-9), c["understanding"] / max(orig["understanding"], 1e-9)

    ok = [c for c in cands if ratios(c)[0] >= retain_floor and ratios(c)[1] >= understanding_floor]
    if ok:
        best = min(ok, key=lambda c: (c["forget"], -c["retain"]))
        return {**best, "met_floors": True}
    best = max(cands, key=lambda c: (min(ratios(c)), -c["forget"]))
    return {**best, "met_floors": False}


def tune(preset: Preset, out: Path, seed: int, *, progress: bool | None = None,
         log: Callable[[str], None] = print) -> Path:
    """Run the preset's tuning grid, pick each method's setting; writes tune.md, returns out/selected.toml."""
    t = preset.tune
    rep = Reproduction(preset, out, seed, progress=progress, log=log)
    bench = rep.bench()
    original = rep.original(bench)
    reads = rep._model_reads
    rep.evaluate(bench, original, t.split, ORIGINAL, reads, phrasings=("paraphrase",))
    cands: dict[str, list[dict]] = {}
    for method in preset.methods:
        base_lr, opts = method_settings(preset, method)
        grid = ([(base_lr, {**opts, "prune_pct": p}) for p in t.manu_prune_pct] if method == "manu"
                else [(lr, opts) for lr in t.lr])
        for lr, o in grid:
            tag = f"@prune={o['prune_pct']:g}" if method == "manu" else f"@lr={lr:g}"
            d = rep.unlearn(bench, original, t.split, method, lr, o, tag=tag)
            if method == "smfa":
                for k in t.k:
                    label = f"smfa{tag},k={k:g}"
                    m = rep.sculpt(original, d, t.split, label, "both", k, tag=tag)
                    rep.evaluate(bench, m, t.split, label, (*reads, f"sculpt/{t.split}/{label}"), k=k,
                                 phrasings=("paraphrase",))
                    settings = {"lr": lr, **o, "k": k}
                    cands.setdefault(method, []).append({"label": label, "settings": settings,
                                                         **score(rep.records, label, t.split)})
            else:
                label = f"{method}{tag}"
                rep.evaluate(bench, d / "model", t.split, label, (*reads, f"unlearn/{t.split}/{method}{tag}"),
                             phrasings=("paraphrase",))
                cands.setdefault(method, []).append({"label": label, "settings": {"lr": lr, **o},
                                                     **score(rep.records, label, t.split)})
    orig = score(rep.records, ORIGINAL, t.split)
    chosen = {m: select(c, orig, t.retain_floor, t.understanding_floor) for m, c in cands.items()}
    write_results(rep.records, out / "results.json")
    dump_json(out / "selected.json", {"original": orig, "selected": chosen, "candidates": cands,
                                      "rule": {"retain_floor": t.retain_floor,
                                               "understanding_floor": t.understanding_floor}})
    toml = [f"# selected by `smfa reproduce --tune` on seed {seed} ({t.split}); paste into [methods]"]
    toml += [f"{m} = {{ {', '.join(f'{k} = {json.dumps(v)}' for k, v in c['settings'].items())} }}"
             for m, c in chosen.items()]
    (out / "selected.toml").write_text("\n".join(toml) + "\n", encoding="utf-8")
    md = [f"# Tuning on seed {seed} ({t.split}, paraphrased questions, Fact 0-10)", "",
          f"original: forget memory {orig['forget']:.2f}, retain memory {orig['retain']:.2f}, "
          f"understanding {orig['understanding']:.2f}. Floors: retain >= {t.retain_floor} x, "
          f"understanding >= {t.understanding_floor} x.", "",
          "| method | setting | forget memory | retain memory | understanding | chosen |", "|---|---|---|---|---|---|"]
    for m, cs in cands.items():
        for c in cs:
            mark = ("**yes**" if chosen[m]["met_floors"] else "yes (no setting met the floors)") \
                if c["label"] == chosen[m]["label"] else ""
            md.append(f"| {m} | {c['settings']} | {c['forget']:.2f} | {c['retain']:.2f} | "
                      f"{c['understanding']:.2f} | {mark} |")
    (out / "tune.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return out / "selected.toml"
