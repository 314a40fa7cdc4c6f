"""Local checkpoints in, trainable models and exported deltas out.

- `load_model(path)`: any local transformers causal-LM or image-text-to-text checkpoint
  with its tokenizer/processor (never a hub download: `local_files_only`).
- `prepare_for_training(model, mode=...)`: LoRA through peft, full fine-tuning of the
  linear layers whose names match a regex (everything else frozen), or every parameter
  ("all": embeddings, norms, lm_head and the vision tower too, as a model built from scratch needs).
- `export_delta(model, out, ...)`: what `smfa sculpt` reads. LoRA → a PEFT adapter dir;
  full → `delta.safetensors` of (trained - original) under the checkpoint's on-disk names
  (what save_pretrained writes, e.g. `model.layers.0.mlp.down_proj.weight` for Qwen while
  the live module says `model.language_model.layers...`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import MethodError

# The language model's linear layers (attention + MLP), not the vision tower or projector.
LANGUAGE_LINEAR = r".*(language_model|model\.layers).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
DELTA_FILE = "delta.safetensors"


@dataclass
class Loaded:
    model: torch.nn.Module
    processor: object  # a ProcessorMixin for VLMs, a tokenizer for causal LMs
    path: Path


PROCESSOR_BASES = {"llava_onevision": "LlavaOnevisionProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor"}
_PROCESSOR_CLASSES: dict[str, type] = {}


def processor_class(kind: str) -> type:
    """The model's processor without its video processor: passing video_processor=None to
    the stock class fails (VIDEO_PROCESSOR_MAPPING lookup), and video processors need
    torchvision. AutoProcessor cannot find these subclasses; use their from_pretrained.
    ProcessorMixin saves and reloads exactly the named __init__ arguments, so they are
    spelled out (minus video_processor)."""
    if kind in _PROCESSOR_CLASSES:
        return _PROCESSOR_CLASSES[kind]
    import transformers as tf

    if kind == "llava_onevision":

        class NoVideoLlavaOnevisionProcessor(tf.LlavaOnevisionProcessor):
            def __init__(
                self, image_processor=None, tokenizer=None, num_image_tokens=None,
                vision_feature_select_strategy=None, chat_template=None, image_token="<image>",
                video_token="<video>", vision_aspect_ratio="anyres_max_9", **kwargs,
            ):
                super().__init__(
                    image_processor, tokenizer, None, num_image_tokens=num_image_tokens,
                    vision_feature_select_strategy=vision_feature_select_strategy, chat_template=chat_template,
                    image_token=image_token, video_token=video_token, vision_aspect_ratio=vision_aspect_ratio,
                    **kwargs,
                )

        cls: type = NoVideoLlavaOnevisionProcessor
    elif kind == "qwen2_5_vl":

        class NoVideoQwen2_5_VLProcessor(tf.Qwen2_5_VLProcessor):
            def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
                super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

        cls = NoVideoQwen2_5_VLProcessor
    else:
        raise ValueError(f"no processor subclass for {kind!r}")
    _PROCESSOR_CLASSES[kind] = cls
    return cls


def _processor_for(path: Path, model_type: str):
    import transformers as tf

    pc = path / "processor_config.json"
    if pc.exists() or (path / "preprocessor_config.json").exists():
        cls_name = json.loads(pc.read_text()).get("processor_class", "") if pc.exists() else ""
        # Processors saved without a video processor (our tiny ones; torchvision-free setups)
        # load only through the subclass that drops it; AutoProcessor would fall back to
        # the bare tokenizer.
        if cls_name.startswith("NoVideo") and model_type in PROCESSOR_BASES:
            return processor_class(model_type).from_pretrained(str(path), local_files_only=True)
        try:
            proc = tf.AutoProcessor.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError):
            # A stock processor whose video processor cannot load (it needs torchvision):
            # images still work through the subclass without it.
            if model_type not in PROCESSOR_BASES:
                raise
            proc = None
        if proc is not None and (hasattr(proc, "image_processor") or model_type not in PROCESSOR_BASES):
            return proc
        return processor_class(model_type).from_pretrained(str(path), local_files_only=True)
    return tf.AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def load_model(path: str | Path, dtype: torch.dtype = torch.float32) -> Loaded:
    """Load a local checkpoint dir: the model class follows config.json (causal LM when
    its architecture says so, else image-text-to-text)."""
    import transformers as tf

    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise MethodError(f"not a transformers checkpoint (no config.json): {path}")
    require_safetensors(path)
    cfg = json.loads(cfg_file.read_text())
    archs = cfg.get("architectures") or []
    auto = tf.AutoModelForCausalLM if any(a.endswith("ForCausalLM") for a in archs) else tf.AutoModelForImageTextToText
    model = auto.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    return Loaded(model, _processor_for(path, cfg.get("model_type", "")), path)


PICKLE_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt")


def require_safetensors(path: Path) -> None:
    """Weights are read from safetensors only: a pickle can run code when unpickled, so a
    checkpoint without *.safetensors is refused by name, before transformers tries it."""
    names = [p.name for p in path.iterdir()]
    if any(n.endswith(".safetensors") for n in names):
        return
    pickles = sorted(n for n in names if n.endswith(PICKLE_WEIGHTS))
    found = f"only {', '.join(pickles)} (pickle)" if pickles else "no *.safetensors weights"
    raise MethodError(f"{path}: {found}; only safetensors checkpoints are read (convert it with "
                      "`AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`)")


def linear_names(model: torch.nn.Module, target: str = LANGUAGE_LINEAR) -> list[str]:
    """Names of nn.Linear modules whose full name matches `target` (re.fullmatch)."""
    rx = re.compile(target)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and rx.fullmatch(n)]
    if not names:
        raise MethodError(f"no linear layer matches target pattern {target!r}")
    return names


def prepare_for_training(
    model: torch.nn.Module,
    mode: str = "lora",
    *,
    target: str = LANGUAGE_LINEAR,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.0,
) -> torch.nn.Module:
    """LoRA (returns a PeftModel), full fine-tuning of the matched linear weights, or "all"."""
    if mode == "all":
        return model.requires_grad_(True)
    names = linear_names(model, target)
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=target)
        return get_peft_model(model, cfg)
    if mode != "full":
        raise MethodError(f"training mode must be 'lora', 'full' or 'all', got {mode!r}")
    model.requires_grad_(False)
    for n in names:
        model.get_submodule(n).weight.requires_grad_(True)
    return model


def trainable_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the trainable parameters (the reference for a dense delta)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def to_disk_names(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Live parameter names → the names save_pretrained writes for this checkpoint."""
    from transformers.core_model_loading import revert_weight_conversion

    return revert_weight_conversion(model, dict(tensors))


def export_delta(
    model: torch.nn.Module,
    out: str | Path,
    *,
    original: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the run's delta to `out` (a dir): the adapter for a PeftModel, else
    `delta.safetensors` = trained - `original` (live names in, on-disk names out)."""
    from safetensors.torch import save_file

    from smfa_core.atomic import AtomicOutput

    out = Path(out)
    check_finite_weights(model)
    if hasattr(model, "peft_config"):
        with AtomicOutput(out, overwrite=True) as tmp:
            model.save_pretrained(tmp)
        return out
    if original is None:
        raise MethodError("a dense delta needs the original weights")
    params = dict(model.named_parameters())
    delta = {n: (params[n].detach() - w.to(params[n].device)).float().cpu().contiguous() for n, w in original.items()}
    with AtomicOutput(out, overwrite=True) as tmp:
        save_file(to_disk_names(model, delta), os.path.join(tmp, DELTA_FILE),
                  metadata={"format": "pt", "smfa": "dense-delta"})
    return out


def check_finite_weights(model: torch.nn.Module) -> None:
    """Trained weights with NaN/Inf are never exported: MethodError naming the first one."""
    for n, p in model.named_parameters():
        if p.requires_grad and not bool(torch.isfinite(p.detach()).all()):
            raise MethodError(f"trained weight {n!r} holds NaN or Inf values; nothing was exported")


def save_final(model: torch.nn.Module, processor: Any, out: str | Path) -> Path:
    """Save a plain HF checkpoint (LoRA merged in) with its tokenizer/processor."""
    from smfa_core.atomic import AtomicOutput

    out = Path(out)
    check_finite_weights(model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    with AtomicOutput(out, overwrite=True) as tmp:  # a run that dies here publishes no model
        model.save_pretrained(tmp)
        if processor is not None:
            processor.save_pretrained(tmp)
    return out
