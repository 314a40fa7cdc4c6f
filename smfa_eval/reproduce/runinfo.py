"""run.json: what a reader needs to rerun the reproduction and judge its numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .preset import Preset
from .steps import Steps


def command_line(argv: list[str]) -> str:
    """The command as a reader would type it: `smfa ...`, whatever path or `python -m` ran it
    (an absolute path to the checkout would point outside the published folder)."""
    prog = Path(argv[0]) if argv else Path("smfa")
    smfa = prog.name == "smfa" or prog.parts[-2:] == ("smfa_cli", "main.py")
    return " ".join(["smfa" if smfa else prog.name, *argv[1:]])


def cpu_model() -> str | None:
    """The CPU's model name (Linux /proc/cpuinfo), else None: run times differ 2x between the
    machines this project has run on, and the architecture alone does not say which it was."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def run_info(preset: Preset, seed: int, argv: list[str], steps: Steps) -> dict:
    """What a reader needs to rerun and to judge the numbers: command, seed, preset, versions,
    machine, wall time per step."""
    import os
    import platform

    import torch
    import transformers

    import smfa_core

    return {"command": command_line(argv), "preset": preset.name, "preset_file": preset.source.name, "seed": seed,
            "arch": preset.arch, "versions": {"python": platform.python_version(), "torch": torch.__version__,
                                              "transformers": transformers.__version__},
            "backends": list(smfa_core.available_backends()),
            "machine": {"cpu": platform.processor() or platform.machine(), "model": cpu_model(), "cores": os.cpu_count(),
                        "system": platform.platform()},
            "wall_s": steps.wall_times(), "total_wall_s": round(sum(steps.wall_times().values()), 1)}


def dump_json(path: Path, obj: Any) -> None:
    """Write `obj` to `path` as indented, key-sorted JSON (other values as str)."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
