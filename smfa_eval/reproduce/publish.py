"""Copy a reproduction's small artefacts (what a reader needs, not the models) to a folder
that is committed, e.g. results/cpu-seed0: written to a temporary sibling, renamed into place."""

from __future__ import annotations

import shutil
from pathlib import Path

ARTEFACTS = ("results.json", "report.md", "run.json", "manifest.json", "tune.md", "selected.toml", "selected.json")


def check_dest(run: Path, dest: Path) -> None:
    """The published folder replaces `dest`: it may neither be nor hold nor lie in the run."""
    r, d = Path(run).resolve(), Path(dest).resolve()
    if d == r or r in d.parents or d in r.parents:
        raise ValueError(f"--publish {dest} and the run directory {run} must not contain each other")


def publish(run: Path, dest: Path) -> Path:
    """Copy ARTEFACTS and the figures of `run` to `dest` (replacing it)."""
    run, dest = Path(run), Path(dest)
    check_dest(run, dest)
    if not (run / "results.json").is_file():
        raise FileNotFoundError(f"{run}: no results.json (has the reproduction finished?)")
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ARTEFACTS:
        if (run / name).is_file():
            shutil.copy2(run / name, tmp / name)
    for png in run.glob("*.png"):
        shutil.copy2(png, tmp / png.name)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest
