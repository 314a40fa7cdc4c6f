"""Library entry points behind `smfa unlearn` / `smfa train`."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from smfa_core.errors import SmfaError
from smfa_core.guard import guard_outputs

from .data import ExampleDataset, load_jsonl
from .errors import MethodError, MethodFailed
from .job import Job, Result, TrainConfig
from .losses import ce
from .method import Method
from .registry import get_method


def unlearn(
    method: str | Method,
    *,
    model: str | Path,
    forget: str | Path,
    retain: str | Path,
    out: str | Path,
    train: TrainConfig | None = None,
    options: dict[str, Any] | None = None,
) -> Result:
    """Run a registered method (or a Method object) on JSONL forget/retain files."""
    guard_outputs({"--model": model, "--forget": forget, "--retain": retain}, run_outputs(out), run_dirs=("--out",))
    m = get_method(method) if isinstance(method, str) else method
    opts = m.resolve_options(options or {})  # fail on bad options/settings before loading anything
    train = train or TrainConfig()
    train.validate()
    job = Job(Path(model), Path(out), load_jsonl(forget), load_jsonl(retain), train, opts)
    return run_job(m, job)


def run_job(m: Method, job: Job) -> Result:
    """`m.run(job)` in OUT. On any failure the directories the run left empty are removed
    (OUT too if this run created it) while saved checkpoints stay for --resume; an exception
    from the method's own code becomes a MethodFailed naming the method."""
    created = not job.out.exists()
    job.out.mkdir(parents=True, exist_ok=True)
    try:
        result = m.run(job)
    except (MethodError, SmfaError):  # already a one-line user error
        _remove_empty_dirs(job.out, created)
        raise
    except Exception as exc:
        _remove_empty_dirs(job.out, created)
        raise MethodFailed(f"method {m.name!r} failed: {type(exc).__name__}: {exc}") from exc
    except BaseException:  # interrupted: same cleanup, the signal's exit stays
        _remove_empty_dirs(job.out, created)
        raise
    if result.model is not None:  # only the main process returns a model
        write_run_info(job, m, result)
    return result


def _remove_empty_dirs(out: Path, created: bool) -> None:
    for dirpath, _dirs, _files in sorted(os.walk(out), key=lambda w: -len(w[0])):  # deepest first
        if Path(dirpath) != out or created:
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)  # only succeeds on an empty directory


# What a run writes inside OUT (SMFA's stages included): each must not be an input either.
RUN_OUTPUTS = ("model", "delta", "checkpoints", "forget", "anchor", "run.json")


def run_outputs(out: str | Path) -> dict[str, Path]:
    """OUT and what a run writes inside it, as outputs for guard_outputs."""
    return {"--out": Path(out), **{f"OUT/{n}": Path(out) / n for n in RUN_OUTPUTS}}


class FineTune(Method):
    """Plain supervised fine-tuning (`smfa train`): CE on the answers of every example."""

    name = "finetune"
    description = "Plain fine-tuning on question/answer examples"
    options: dict = {}

    def make_dataset(self, job: Job):
        return ExampleDataset(job.forget)

    def compute_loss(self, model, inputs, trainer):
        return ce(model, inputs)


def finetune(*, model: str | Path, data: str | Path, out: str | Path, train: TrainConfig | None = None,
             image_root: str | Path | None = None) -> Result:
    """Fine-tune on one JSONL file; out/model is the fine-tuned (merged) checkpoint.
    `image_root`: where relative image paths start (default: `data.image_root_of(data)`)."""
    guard_outputs({"--model": model, "--data": data}, run_outputs(out), run_dirs=("--out",))
    m = FineTune()
    train = train or TrainConfig()
    train.validate()
    job = Job(Path(model), Path(out), load_jsonl(data, image_root=image_root), [], train, {})
    return run_job(m, job)


def write_run_info(job: Job, method: Method, result: Result) -> Path:
    """out/run.json: method, base model, options, loop settings, outputs (`model` is the
    written checkpoint) and metrics."""
    info = {
        "method": method.name,
        "base_model": str(job.model_path),  # not "model": the result's output path takes that key
        "options": job.options,
        "train": vars(job.train),
        **result.as_dict(),
    }
    path = job.out / "run.json"
    path.write_text(json.dumps(info, indent=2, default=str))
    return path
