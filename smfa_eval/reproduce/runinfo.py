"""run.json: what a reader needs to rerun the reproduction and judge its numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .preset import Preset
from .steps import Steps


def run_info(preset: Preset, seed: int, argv: list[str], steps: Steps) -> dict:
    """What a reader needs to rerun and to judge the numbers: command, seed, preset, versions,
    machine, wall time per step."""
    import os
    import platform

    import torch
    import transformers

    import smfa_core

    return {"command": " ".join(argv), "preset": preset.name, "preset_file": preset.source.name, "seed": seed,
            "arch": preset.arch, "versions": {"python": platform.python_version(), "torch": torch.__version__,
                                              "transformers": transformers.__version__},
            "backends": list(smfa_core.available_backends()),
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                        "system": platform.platform()},
            "wall_s": steps.wall_times(), "total_wall_s": round(sum(steps.wall_times().values()), 1)}


def dump_json(path: Path, obj: Any) -> None:
    """Write `obj` to `path` as indented, key-sorted JSON (other values as str)."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
