"""Names the reproduction's steps share: the original's label, a label as a directory name, a
method's preset settings and the preset's local model path."""

from __future__ import annotations

from pathlib import Path

from .preset import Preset

ORIGINAL = "original"


def model_path(preset: Preset) -> Path:
    """[model] path: one directory, or a table arch -> directory."""
    path = preset.model["path"]
    return Path(path[preset.arch] if isinstance(path, dict) else path)


def step_label(label: str) -> str:
    """A model label as a directory name ("smfa:conflict" -> "smfa-conflict")."""
    return label.replace(":", "-").replace("/", "-")


def method_settings(preset: Preset, method: str) -> tuple[float, dict]:
    """(learning rate, method options) of a method in the preset: `lr` in its table overrides
    the shared [unlearn] lr (the tuned value), the rest are the method's options."""
    opts = dict(preset.methods.get(method, {}))
    return float(opts.pop("lr", preset.unlearn.lr)), opts
