"""The retrained oracle: the original's fine-tuning recipe on everything except a split's
forget profiles. It is what a perfect unlearning method would produce (a model that never saw
the forget set), so it is a row of every table and the reference distribution of forget
quality (`privacy.add_forget_quality`).

Two ways to get one:

* `smfa bench run --oracle-base BASE`: fine-tune BASE (the model --model was fine-tuned from)
  on the benchmark's training rows (`finetune` and, where built, the memory rewordings) minus
  the forget profiles' rows, with `oracle_train_config`'s budget; resumable like unlearning;
* `--oracle-model DIR`: a checkpoint trained elsewhere (e.g. by the reproduction, with
  `retain_rows` on its own stage data).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .schema import Bench, BenchDataError

if TYPE_CHECKING:
    from smfa_methods.job import TrainConfig

ORACLE = "oracle"
DEFAULT_SOURCES = ("finetune", "reworded", "general")


def retain_rows(rows: Iterable[dict], forget: Iterable[str]) -> list[dict]:
    """The rows about anyone but the forget profiles (rows about no profile, e.g. general
    images, are kept: the oracle keeps every ability that is not the forget set)."""
    drop = set(forget)
    return [r for r in rows if r.get("profile_id") not in drop]


def oracle_data(bench: Bench, split: str, sources: Sequence[str] = DEFAULT_SOURCES) -> list[dict]:
    """The oracle's training rows: each source the benchmark has, minus the forget profiles."""
    forget = bench.split(split).forget
    rows: list[dict] = []
    for key in sources:
        if key not in bench.manifest.files:
            continue  # e.g. no reworded.jsonl: the original was not trained on it either
        with bench.path(key).open(encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    kept = retain_rows(rows, forget)
    if not kept:
        raise BenchDataError(f"{bench.root}: no training rows left for the oracle of {split}")
    return kept


def oracle_train_config(steps: int, lr: float, batch_size: int, seed: int = 0, progress: bool | None = None
                        ) -> TrainConfig:
    """The oracle's budget: every parameter, cosine schedule (the reproduction's stage recipe)."""
    from smfa_methods.job import TrainConfig

    return TrainConfig(mode="all", lr=lr, batch_size=batch_size, max_steps=steps, scheduler="cosine",
                       warmup_ratio=0.05, min_lr_ratio=0.05, max_length=0, seed=seed, progress=progress)


def train_oracle(bench: Bench, split: str, base: Path, out: Path, train: TrainConfig, *,
                 sources: Sequence[str] = DEFAULT_SOURCES, log: Callable[[str], None] = print) -> Path:
    """Fine-tune `base` on `oracle_data`; returns out/model. A finished run with the same
    settings (out/oracle.json) is reused; one with other settings is an error."""
    from smfa_methods.api import finetune

    from .evaluate import RunMismatch

    want = {"base": str(base), "split": split, "sources": list(sources),
            "train": {k: v for k, v in vars(train).items() if k != "progress"}}
    info = out / "oracle.json"
    if info.is_file() and (out / "model" / "config.json").is_file():
        have = json.loads(info.read_text())
        if have != json.loads(json.dumps(want, default=str)):
            raise RunMismatch(f"{out} holds an oracle trained with other settings; use another --out or --overwrite")
        log(f"{ORACLE}: reusing {out / 'model'}")
        return out / "model"
    rows = oracle_data(bench, split, sources)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    data = tmp / "train.jsonl"
    data.write_text("".join(json.dumps({k: r[k] for k in ("question", "answer", "image") if r.get(k) is not None})
                            + "\n" for r in rows), encoding="utf-8")
    log(f"{ORACLE}: fine-tuning {base} on {len(rows)} rows without the {split} forget profiles -> {out}")
    finetune(model=base, data=data, out=tmp, train=train, image_root=bench.root)
    shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
    (tmp / "oracle.json").write_text(json.dumps(want, indent=2, sort_keys=True, default=str) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)  # only a finished oracle appears under its name
    return out / "model"


def oracle_info(out: Path) -> dict[str, Any]:
    """The settings a finished oracle run recorded (out/oracle.json)."""
    return json.loads((out / "oracle.json").read_text())
