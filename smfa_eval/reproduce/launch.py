"""The training steps of a preset with `[launch]`, run under a launcher.

`smfa reproduce` stays one process: it builds the benchmark, evaluates, sculpts and keeps the
step ledger alone. Starting it under `accelerate launch` would make every rank run every step
on the same directories at once, so instead each *training* step (a stage of the original, an
unlearning run) becomes one subprocess,

    accelerate launch --num_processes N [--config_file F] [ARGS] -m smfa_cli.main unlearn ... --out TMP

with the step's TrainConfig spelled out as `smfa unlearn` / `smfa train` flags and the step's
temporary directory as --out, so the ledger publishes it exactly as an in-process step. A
failed subprocess is a one-line error naming the step; the ledger then publishes nothing.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from dataclasses import fields, replace
from pathlib import Path
from typing import IO, Any

from smfa_methods.errors import MethodError
from smfa_methods.method import TrainConfig

from .preset import Launch


def launches(method: str, options: dict[str, Any]) -> bool:
    """Whether this unlearning run goes through the launcher. Two stay in this process: manu
    trains nothing (every rank would prune and write the same files), and smfa variant=public
    refuses more than one process."""
    if method == "manu":
        return False
    return not (method == "smfa" and options.get("variant") == "public")


class LaunchFailed(MethodError):
    """A launched training step exited non-zero (the message names the step)."""


def under_a_launcher() -> bool:
    """This process is one rank of a multi-process launch (torchrun and accelerate set these)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 or "LOCAL_RANK" in os.environ


def launcher_argv(launch: Launch) -> list[str]:
    """The launcher, run by this interpreter (`python -m ...`, not whatever `accelerate` is on
    PATH: the processes must import the same smfa and torch as this one)."""
    n = str(launch.num_processes)
    if launch.launcher == "torchrun":
        head = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", n]
    else:
        head = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", n]
        if launch.config_file is not None:
            head += ["--config_file", str(launch.config_file)]
    return [*head, *launch.args, "-m", "smfa_cli.main"]


def _num(v: float | int) -> str:
    return repr(v)  # repr round-trips a float exactly (2e-4 -> "0.0002")


def train_flags(cfg: TrainConfig) -> list[str]:
    """Every TrainConfig field as the CLI flag that sets it (`smfa_cli.methods_cmds._train_options`).
    A field this does not know is an error, so a new knob cannot be silently dropped here."""
    flags: list[str] = []
    modes = {"lora": "--lora", "full": "--full", "all": "--all-params"}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        name = "--" + f.name.replace("_", "-")
        if f.name == "mode":
            flags.append(modes[v])
        elif f.name == "target":
            flags += [] if v is None else ["--target", v]
        elif f.name in ("bf16", "fp16", "resume"):
            flags += [name] if v else []
        elif f.name == "progress":
            flags += [] if v is None else ["--progress" if v else "--no-progress"]
        elif f.name in ("scheduler", "report_to"):
            flags += [name, str(v)]
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            flags += [name, _num(v)]
        else:
            raise TypeError(f"TrainConfig.{f.name}: no CLI flag mapping (add one in launch.train_flags)")
    return flags


def per_process(cfg: TrainConfig, launch: Launch) -> TrainConfig:
    """The preset's batch size is the global one: split across the processes (preset.py checks
    that it divides), so the run is the same experiment on any number of GPUs. An automatic
    progress bar is decided here (see below)."""
    progress = cfg.progress
    if progress is None:  # their stderr is a pipe through this process: decide by this one's terminal
        progress = sys.stderr.isatty()
    return replace(cfg, batch_size=cfg.batch_size // launch.num_processes, progress=progress)


def option_sets(method: str, options: dict[str, Any]) -> list[str]:
    """Method options as `--set KEY=VALUE`, spelled so that the method's defaults type them
    back to the same values (options.py): a string for a list/table option (a rules file) is
    JSON-quoted, or it would be read as JSON."""
    from smfa_methods.options import option_specs
    from smfa_methods.registry import get_method

    specs = option_specs(get_method(method).options)
    out: list[str] = []
    for k, v in options.items():
        if isinstance(v, bool):
            raw = "true" if v else "false"
        elif isinstance(v, (int, float)):
            raw = _num(v)
        elif isinstance(v, str) and (k not in specs or isinstance(specs[k].default, str)):
            raw = v
        else:  # lists, tables, None, strings for those: JSON, as options.py reads them
            raw = json.dumps(v)
        out += ["--set", f"{k}={raw}"]
    return out


def train_command(launch: Launch, *, model: Path, data: Path, out: Path, image_root: Path,
                  cfg: TrainConfig) -> list[str]:
    """`smfa train` of one stage under the launcher."""
    return [*launcher_argv(launch), "train", "--model", str(model), "--data", str(data), "--out", str(out),
            "--image-root", str(image_root), *train_flags(per_process(cfg, launch))]


def unlearn_command(launch: Launch, *, method: str, model: Path, forget: Path, retain: Path, out: Path,
                    cfg: TrainConfig, options: dict[str, Any]) -> list[str]:
    """`smfa unlearn --method METHOD` of one step under the launcher."""
    return [*launcher_argv(launch), "unlearn", "--method", method, "--model", str(model), "--forget", str(forget),
            "--retain", str(retain), "--out", str(out), *option_sets(method, options),
            *train_flags(per_process(cfg, launch))]


def command_line(argv: list[str]) -> str:
    """`argv` as one shell-quoted command line."""
    return shlex.join(argv)


def _child_env() -> dict[str, str]:
    """The processes import smfa from the tree this process imported it from."""
    tree = str(Path(__file__).resolve().parents[2])  # the directory holding smfa_eval and smfa_cli
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": tree + (os.pathsep + path if path else "")}


def _forward(src: IO[bytes], tail: bytearray) -> None:
    """Copy the children's stderr through as it comes (progress bars redraw with \\r, so by
    chunk, not by line), keeping the last few KiB for the error message."""
    dst = getattr(sys.stderr, "buffer", None)
    while chunk := src.read1(4096):  # type: ignore[attr-defined]
        if dst is not None:
            dst.write(chunk)
            dst.flush()
        else:  # a text-only stderr (e.g. captured by a test runner)
            sys.stderr.write(chunk.decode("utf-8", "replace"))
        tail += chunk
        del tail[:-8192]


def _release_accelerator_memory() -> None:
    """This process evaluates between training steps; what torch's allocator still caches on
    the GPU would be missing for the launched processes."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        import gc

        gc.collect()
        torch.cuda.empty_cache()


def last_error(tail: bytes) -> str:
    """The children's last error line (`Error: ...` from the CLI, else the last non-empty line)."""
    lines = [ln.strip() for ln in tail.decode("utf-8", "replace").replace("\r", "\n").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error:" in ln]  # the CLI's "Error: ...", a traceback's "XError: ..."
    return (errors or lines or ["(no output)"])[-1]


def run_launched(argv: list[str], *, launch: Launch, step: str, out: Path) -> dict:
    """Run one launched training step; its metrics (OUT/run.json, written by the main process).
    Raises LaunchFailed naming the step when the launcher exits non-zero or wrote no result."""
    _release_accelerator_memory()
    proc = subprocess.Popen(argv, env=_child_env(), stderr=subprocess.PIPE)
    tail = bytearray()
    fwd = threading.Thread(target=_forward, args=(proc.stderr, tail), daemon=True)
    fwd.start()
    try:
        rc = proc.wait()
    except BaseException:  # interrupted: the processes must not outlive the run that started them
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    finally:
        fwd.join(timeout=5)
    what = argv[argv.index("smfa_cli.main") + 1] if "smfa_cli.main" in argv[:-1] else argv[-1]  # train | unlearn
    if rc != 0:
        raise LaunchFailed(f"step {step}: `smfa {what}` under {launch.describe()} exited with status {rc}: "
                           f"{last_error(bytes(tail))}")
    info = out / "run.json"
    if not info.is_file():
        raise LaunchFailed(f"step {step}: `smfa {what}` under the launcher exited 0 but wrote no {info}")
    return json.loads(info.read_text(encoding="utf-8")).get("metrics", {})
