"""A PEFT LoRA adapter's configuration: what it may hold (and what it may not), its scaling
rule per module, and the key patterns of its weights."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable

from ..errors import SmfaError
from .base import ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_WEIGHTS_BIN

# Options of peft's LoraConfig that change what the adapter means beyond ΔW = s·B@A.
_UNSUPPORTED_FLAGS = {
    "use_dora": "DoRA (use_dora) rescales the merged weight by a magnitude vector; merge the adapter "
    "first (merge_and_unload) and use the result as a checkpoint delta",
    "lora_bias": "lora_bias adds a trained bias to lora_B",
    "use_qalora": "QA-LoRA (use_qalora) pools the input before lora_A",
}
_UNSUPPORTED_SET = {
    "layer_replication": "layer_replication changes the model's layer structure",
    "target_parameters": "LoRA on nn.Parameter targets (target_parameters) is not supported",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens) only applies after invocation tokens",
    "trainable_token_indices": "trainable tokens (trainable_token_indices) are not supported",
    "use_bdlora": "block-diagonal LoRA (use_bdlora) is not supported",
    "arrow_config": "Arrow routing (arrow_config) is not supported",
    "kasa_config": "KaSA (kasa_config) is not supported",
    "monteclora_config": "MonteCLoRA (monteclora_config) is not supported",
    "velora_config": "VeLoRA (velora_config) is not supported",
}
# init_lora_weights values that rewrite the base weights (the base becomes a residual), so that ΔW is not
# B@A relative to the original base. ("eva", "orthogonal", "gaussian", "mica" leave the base alone.)
_BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")

_RE_LINEAR = re.compile(r"^(?P<mod>.+)\.lora_(?P<ab>[AB])(?:\.(?P<adapter>[^.]+))?\.weight$")
_RE_EMBED = re.compile(r"^(?P<mod>.+)\.lora_embedding_(?P<ab>[AB])(?:\.(?P<adapter>[^.]+))?$")
_RE_FULL_WRAPPED = re.compile(r"\.modules_to_save\.[^.]+\.")
_PEFT_PREFIX = "base_model.model."
#: LoRA products are computed in row tiles of about this many fp32 elements (16 MiB), on a fixed grid.

def _check_scale(cfg_path: str, key: str, v: object, *, integer: bool) -> None:
    """A rank (positive integer) or an alpha (positive finite number): anything else would
    scale every ΔW by NaN, Inf or a division by zero."""
    ok = isinstance(v, int) if integer else isinstance(v, (int, float)) and math.isfinite(v)
    if isinstance(v, bool) or not ok or v <= 0:  # type: ignore[operator]
        what = "a positive integer" if integer else "a positive finite number"
        raise SmfaError(f"{cfg_path}: {key} must be {what}, got {v!r}")


def _strip_prefix(key: str) -> str:
    return key[len(_PEFT_PREFIX) :] if key.startswith(_PEFT_PREFIX) else key


def get_pattern_key(pattern_keys: Iterable[str], key_to_match: str) -> str:
    """peft 0.21's ``peft.utils.other.get_pattern_key``: first pattern that matches the key's tail."""
    for key in pattern_keys:
        if re.match(rf"(.*\.)?({key})$", key_to_match):
            return key
    return key_to_match




def load_config(path: str, label: str) -> dict:
    """The adapter directory's adapter_config.json as a dict (SmfaError naming the file otherwise)."""
    cfg_path = os.path.join(path, ADAPTER_CONFIG)
    if not os.path.isdir(path):
        raise SmfaError(f"{label} LoRA adapter {path}: not a directory (expected a PEFT adapter dir)")
    if not os.path.isfile(cfg_path):
        raise SmfaError(f"{label} LoRA adapter {path}: no {ADAPTER_CONFIG} (not a PEFT adapter dir)")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise SmfaError(f"{cfg_path}: cannot read adapter config: {e}") from None
    if not isinstance(cfg, dict):
        raise SmfaError(f"{cfg_path}: adapter config is not a JSON object")
    return cfg


def check_config(cfg: dict, cfg_path: str) -> None:
    """SmfaError unless ΔW = s·B@A is what the adapter means (plain LoRA, sane ranks and alphas)."""
    pt = cfg.get("peft_type")
    if str(pt).upper() != "LORA":
        raise SmfaError(f"{cfg_path}: peft_type is {pt!r}; only LORA adapters are supported")
    for key, why in {**_UNSUPPORTED_FLAGS, **_UNSUPPORTED_SET}.items():
        if cfg.get(key):
            raise SmfaError(f"{cfg_path}: unsupported option {key}={cfg[key]!r}: {why}")
    init = cfg.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS):
        raise SmfaError(
            f"{cfg_path}: unsupported option init_lora_weights={init!r}: this initialisation changes the base "
            "weights, so the adapter alone is not the delta; convert it with peft's "
            "path_initial_model_for_weight_conversion when saving"
        )
    _check_scale(cfg_path, "r", cfg.get("r"), integer=True)
    _check_scale(cfg_path, "lora_alpha", cfg.get("lora_alpha"), integer=False)
    for key in ("rank_pattern", "alpha_pattern"):
        v = cfg.get(key) or {}
        if not isinstance(v, dict):
            raise SmfaError(f"{cfg_path}: {key} must be an object, got {v!r}")
        for pat, value in v.items():
            try:
                re.compile(rf"(.*\.)?({pat})$")
            except re.error as e:
                raise SmfaError(f"{cfg_path}: {key} key {pat!r} is not a valid regular expression: {e}") from None
            _check_scale(cfg_path, f"{key}[{pat!r}]", value, integer=key == "rank_pattern")


def find_weights(path: str, label: str, weights_file: str) -> str:
    """The adapter's safetensors weights; a pickle-only adapter is refused with how to convert it."""
    st = os.path.join(path, weights_file)
    if os.path.isfile(st):
        return st
    if os.path.isfile(os.path.join(path, ADAPTER_WEIGHTS_BIN)):
        raise SmfaError(
            f"{label} LoRA adapter {path}: only {ADAPTER_WEIGHTS_BIN} (pickle) found; convert it to "
            f"safetensors first, e.g. `PeftModel.from_pretrained(...).save_pretrained(dir, "
            f"safe_serialization=True)` or `safetensors.torch.save_file(torch.load(bin), '{ADAPTER_WEIGHTS}')`"
        )
    raise SmfaError(f"{label} LoRA adapter {path}: no {weights_file} in this directory")


def scaling(cfg: dict, module: str) -> tuple[int, float]:
    """(r, s) of `module`: rank and alpha from rank_pattern/alpha_pattern by peft's matching rule;
    s = alpha/r, or alpha/√r with rsLoRA."""
    rp = cfg.get("rank_pattern") or {}
    ap = cfg.get("alpha_pattern") or {}
    r = rp.get(get_pattern_key(rp.keys(), module), cfg["r"])
    alpha = ap.get(get_pattern_key(ap.keys(), module), cfg["lora_alpha"])
    if cfg.get("use_rslora"):
        return r, alpha / math.sqrt(r)
    return r, alpha / r
