"""What a path holds (`detect_kind`) and the one entry point that opens it as a delta source."""

from __future__ import annotations

import os

from ..errors import SmfaError
from ..safetensors_io import Checkpoint
from .base import ADAPTER_CONFIG, ADAPTER_WEIGHTS, KINDS, MASK_FILE, MASKED_WEIGHTS, DeltaSource
from .checkpoint import CheckpointDeltaSource
from .dense import DenseDeltaSource
from .lora import LoraSource
from .masked import MaskedAdapterSource


def detect_kind(path: str | os.PathLike) -> str:
    """``masked-adapter`` (adapter dir with smfa_mask.safetensors), ``lora`` (dir with
    adapter_config.json), ``checkpoint`` (dir with config.json), else ``delta``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise SmfaError(f"{path}: no such file or directory")
    if os.path.isdir(path):
        entries = set(os.listdir(path))
        if ADAPTER_CONFIG in entries:
            return "masked-adapter" if MASK_FILE in entries else "lora"
        if "config.json" in entries:
            return "checkpoint"
        if any(e.endswith(".index.json") or e.endswith(".safetensors") for e in entries):
            return "delta"
        raise SmfaError(
            f"{path}: cannot tell what this is: no {ADAPTER_CONFIG} (LoRA adapter), no config.json (fine-tuned "
            "checkpoint) and no *.safetensors / *.index.json (dense delta)"
        )
    # A file: the weights of an adapter dir count as that adapter; anything else is a dense delta.
    parent = os.path.dirname(path) or "."
    if os.path.basename(path) in (ADAPTER_WEIGHTS, ADAPTER_CONFIG, MASKED_WEIGHTS, MASK_FILE) and os.path.isfile(
        os.path.join(parent, ADAPTER_CONFIG)
    ):
        return "masked-adapter" if os.path.isfile(os.path.join(parent, MASK_FILE)) else "lora"
    return "delta"


def open_source(
    path: str | os.PathLike,
    *,
    kind: str = "auto",
    base: Checkpoint | None = None,
    target_names: list[str] | None = None,
    label: str = "forget",
) -> DeltaSource:
    """Open a delta source; its names are mapped onto ``target_names`` when given."""
    path = os.fspath(path)
    if kind == "auto":
        try:
            kind = detect_kind(path)
        except SmfaError as e:
            raise SmfaError(f"{label}: {e}") from None
        if kind == "delta":
            return DenseDeltaSource(path, target_names=target_names, label=label, detected=True)
    if kind == "delta":
        return DenseDeltaSource(path, target_names=target_names, label=label)
    if kind == "lora":
        return LoraSource(path, base=base, target_names=target_names, label=label)
    if kind == "masked-adapter":
        return MaskedAdapterSource(path, base=base, target_names=target_names, label=label)
    if kind == "checkpoint":
        if not os.path.exists(path):
            raise SmfaError(f"{label} checkpoint {path}: no such file or directory")
        return CheckpointDeltaSource(path, base=base, target_names=target_names, label=label)
    raise SmfaError(f"{label}: unknown delta kind {kind!r} (expected auto, {', '.join(KINDS)})")
