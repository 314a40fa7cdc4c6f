"""`smfa bench run`: the whole comparison on one split, resumable.

Unlearn a fine-tuned model with each method on the split's forget / few-shot retain files,
evaluate every result (and, as the `vanilla` row, the model before unlearning), and write the
combined report (Tables 1 and 2, figures). Layout of OUT:

    vanilla/eval/            smfa eval of --model itself
    oracle/train/, oracle/eval/   with --oracle-base: the retrained oracle (oracle.py) and its eval
    <method>+<attack>/       with --attack: smfa attack of <method>'s model (attacks/), its eval/
    <method>/unlearn/        smfa unlearn (model/, deltas, run.json)
    <method>/eval/           smfa eval of <method>/unlearn's model
    report/report.md         smfa report over every eval/

A rerun with the same settings reuses finished unlearning runs and resumes evaluations; a
finished run with other settings is an error (another OUT, or --overwrite), never reused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .evaluate import RunMismatch, run_eval
from .judges import Judge
from .report import write_report
from .schema import Bench, BenchDataError

if TYPE_CHECKING:
    from smfa_methods.job import TrainConfig

VANILLA = "vanilla"


def _normal(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


# TrainConfig fields that change how a run is shown, not what it computes: not compared on reuse
_DISPLAY_ONLY = frozenset({"progress"})


def _train_settings(train: Any) -> Any:
    """A run.json "train" record without the display-only keys (anything but a dict as is)."""
    if not isinstance(train, dict):
        return train
    return {k: v for k, v in train.items() if k not in _DISPLAY_ONLY}


def _unlearned_model(method: str, model: Path, forget: Path, retain: Path, out: Path, train, options: dict,
                     log: Callable[[str], None]) -> Path:
    """The model `smfa unlearn` wrote in `out`, reused when `out/run.json` records these settings."""
    from smfa_methods.api import unlearn

    info_path = out / "run.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        want = {"method": method, "base_model": str(model), "options": _normal(options),
                "train": _train_settings(_normal(vars(train)))}
        have = {k: info.get(k) for k in want}
        have["train"] = _train_settings(have["train"])
        if have != want:
            diff = sorted(k for k in want if have[k] != want[k])
            raise RunMismatch(f"{out} holds a finished {info.get('method')!r} run with other settings "
                              f"({', '.join(diff)}); use another --out or --overwrite")
        if info.get("model") and Path(info["model"]).is_dir():
            log(f"{method}: reusing {info['model']}")
            return Path(info["model"])
    log(f"{method}: unlearning -> {out}")
    result = unlearn(method, model=model, forget=forget, retain=retain, out=out, train=train, options=options)
    if result.model is None:
        raise RunMismatch(f"{method}: the unlearning run in {out} wrote no model")
    return Path(result.model)


def _checked_request(bench: Bench, split: str, methods: Sequence[str], method_options: dict[str, dict],
                     baseline: bool, attacks: Sequence[str], oracle_model: Path | None,
                     oracle_base: Path | None) -> tuple[Path, Path, dict[str, dict]]:
    """Every method, option, attack and oracle choice checked before anything is trained;
    returns (forget file, retain file, each method's resolved options)."""
    from smfa_methods.registry import get_method

    from .attacks.run import ATTACK_PARAMS

    sp = bench.split(split)
    if not sp.forget_file or not sp.retain_file:
        raise BenchDataError(f"{bench.root / 'manifest.json'}: split {split!r} names no forget_file/retain_file "
                             "to unlearn from")
    if not methods and not baseline:
        raise BenchDataError("nothing to run: give at least one --method, or keep the vanilla baseline")
    if len(set(methods)) != len(methods) or VANILLA in methods:
        raise BenchDataError(f"methods must be distinct and not {VANILLA!r}: {list(methods)}")
    stray = sorted(set(method_options) - set(methods))
    if stray:
        raise BenchDataError(f"options given for {', '.join(stray)}, which is not among the methods run")
    resolved = {m: get_method(m).resolve_options(method_options.get(m, {})) for m in methods}
    bad = sorted(set(attacks) - set(ATTACK_PARAMS))
    if bad:
        raise BenchDataError(f"unknown attack(s) {bad}; one of {', '.join(ATTACK_PARAMS)}")
    if oracle_model is not None and oracle_base is not None:
        raise BenchDataError("give --oracle-model or --oracle-base, not both")
    return bench.root / sp.forget_file, bench.root / sp.retain_file, resolved


def run_benchmark(data: str | Path, split: str, model: str | Path, methods: Sequence[str], out: str | Path, *,
                  judge: Judge, judge_name: str, judge_options: dict | None = None, train: TrainConfig | None = None,
                  method_options: dict[str, dict] | None = None, baseline: bool = True, batch_size: int = 8,
                  max_new_tokens: int = 64, limit: int | None = None, progress: bool = True,
                  log: Callable[[str], None] = print, privacy: bool = False, oracle_model: Path | None = None,
                  oracle_base: Path | None = None, oracle_train: TrainConfig | None = None,
                  attacks: Sequence[str] = ()) -> Path:
    """Run the comparison (see the module doc); returns OUT/report/report.md. `privacy`: the
    likelihood metrics too (privacy.py); an oracle (`oracle_model`, or one trained from
    `oracle_base` with `oracle_train`) implies them and adds forget quality to every row.
    `attacks` (relearn, int8, int4, perturb): each method's model attacked with `smfa attack`'s
    defaults, evaluated as the rows METHOD+ATTACK."""
    from smfa_methods.job import TrainConfig

    bench = Bench(data)
    forget, retain, resolved = _checked_request(bench, split, methods, method_options or {}, baseline, attacks,
                                                oracle_model, oracle_base)
    train = train or TrainConfig()
    train.validate()
    privacy = privacy or oracle_model is not None or oracle_base is not None
    if oracle_base is not None:
        from .oracle import oracle_train_config

        oracle_train = oracle_train or oracle_train_config(1000, 1e-3, 8)
        oracle_train.validate()
    out = Path(out)
    model = Path(model)

    def evaluate(model_dir: Path, label: str, opts: dict) -> Path:
        eval_dir = out / label / "eval"
        log(f"{label}: evaluating {model_dir} on {split} -> {eval_dir}")
        run_eval(bench.root, split, eval_dir, judge=judge, judge_name=judge_name, judge_options=judge_options,
                 model=str(model_dir), batch_size=batch_size, max_new_tokens=max_new_tokens, limit=limit,
                 method=label, k=opts.get("k"), mode=opts.get("mode"), progress=progress, privacy=privacy)
        return eval_dir

    runs = []
    if baseline:
        runs.append(evaluate(model, VANILLA, {}))
    for m in methods:
        unlearned = _unlearned_model(m, model, forget, retain, out / m / "unlearn", train, resolved[m], log)
        runs.append(evaluate(unlearned, m, resolved[m]))
        for a in attacks:
            from .attacks.run import ATTACK_PARAMS, run_attack

            kind, params = ATTACK_PARAMS[a]
            run_attack(kind, unlearned, bench.root, split, out / f"{m}+{a}", params=params, label=m,
                       progress=progress, log=log, eval_kw={
                           "judge": judge, "judge_name": judge_name, "judge_options": judge_options,
                           "batch_size": batch_size, "max_new_tokens": max_new_tokens, "limit": limit,
                           "privacy": privacy})
            runs.append(out / f"{m}+{a}" / "eval")
    if oracle_model is not None or oracle_base is not None:
        from .oracle import ORACLE, train_oracle
        from .privacy import add_forget_quality

        if oracle_base is not None:
            oracle_model = train_oracle(bench, split, Path(oracle_base), out / ORACLE / "train", oracle_train, log=log)
        oracle_eval = evaluate(Path(oracle_model), ORACLE, {})  # type: ignore[arg-type]
        for r in runs:
            log(f"forget quality of {r.parent.name}: {add_forget_quality(r, oracle_eval)}")
        runs.append(oracle_eval)
    return write_report(runs, out / "report")
