"""Batched greedy generation for any local transformers causal LM or image-text-to-text
model, with per-item output that an interrupted run resumes from.

Models load through `smfa_methods.models.load_model` (`local_files_only`): evaluation never
downloads weights.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

PLAIN_TEMPLATE = "Question: {q}\nAnswer:"


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    image: Path | None = None


class Generator(Protocol):
    def generate(self, prompts: Sequence[Prompt]) -> list[str]: ...


class GenerationError(RuntimeError):
    pass


_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _resolve_dtype(name: str | None, config: dict) -> torch.dtype:
    """`name` (fp32/bf16/fp16 or a torch dtype name); by default the checkpoint's own dtype,
    as transformers' dtype="auto" would pick, so a bf16 checkpoint is not doubled to fp32."""
    import torch

    name = (name or config.get("dtype") or config.get("torch_dtype")
            or (config.get("text_config") or {}).get("dtype") or "float32")
    dtype = getattr(torch, _DTYPES.get(name, name), None)
    if not isinstance(dtype, torch.dtype):
        raise GenerationError(f"unknown dtype {name!r}; use fp32, bf16 or fp16")
    return dtype


class HFGenerator:
    """Greedy decoding (do_sample=False) with the model's chat template, left padding,
    stopping at EOS or after `max_new_tokens`.

    The model and its tokenizer/processor come from `smfa_methods.models.load_model`, the
    one place that knows how to load local causal-LM and VLM checkpoints (including
    processors saved without a video processor). A processor with an image processor
    makes this a VLM generator; otherwise images are dropped with a warning."""

    def __init__(self, model_path: str | Path, max_new_tokens: int = 64, device: str = "cpu",
                 dtype: str | None = None) -> None:
        from smfa_methods.errors import MethodError
        from smfa_methods.models import load_model

        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise GenerationError(f"{path}: not a transformers model directory (no config.json)")
        try:
            config = json.loads((path / "config.json").read_text())
            loaded = load_model(path, dtype=_resolve_dtype(dtype, config))
        except (OSError, ValueError, MethodError) as exc:
            raise GenerationError(f"{path}: cannot load model/processor: {exc}") from None
        proc = loaded.processor
        self.is_vlm = hasattr(proc, "image_processor")
        self.processor = proc if self.is_vlm else None
        self.tokenizer = proc.tokenizer if self.is_vlm else proc
        self.model = loaded.model.to(device).eval()
        self.device, self.max_new_tokens = device, max_new_tokens
        self.tokenizer.padding_side = "left"  # generation continues from the right edge
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Chat models often end a turn with a token other than the tokenizer's EOS (listed
        # in generation_config); stop at any of them.
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos = list(eos) if isinstance(eos, (list, tuple)) else [] if eos is None else [eos]
        self.eos_token_ids = list(dict.fromkeys(eos + [self.tokenizer.eos_token_id]))
        self._warned = False

    def _chat(self, prompt: Prompt, with_image: bool) -> str:
        template_owner = self.processor if self.is_vlm else self.tokenizer
        if getattr(template_owner, "chat_template", None) is None and getattr(self.tokenizer, "chat_template", None) is None:
            return PLAIN_TEMPLATE.format(q=prompt.text)
        if self.is_vlm:
            content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": prompt.text}]
            msgs = [{"role": "user", "content": content}]
        else:
            msgs = [{"role": "user", "content": prompt.text}]
        return template_owner.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)

    def generate(self, prompts: Sequence[Prompt]) -> list[str]:
        import torch
        from PIL import Image

        out: list[str] = [""] * len(prompts)
        # A processor batch either has an image for every prompt or none.
        groups: dict[bool, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(self.is_vlm and p.image is not None, []).append(i)
        if not self.is_vlm and any(p.image is not None for p in prompts) and not self._warned:
            warnings.warn("text-only model: images are dropped, only the questions are asked", stacklevel=2)
            self._warned = True
        for with_image, idx in groups.items():
            texts = [self._chat(prompts[i], with_image) for i in idx]
            if with_image:
                images = [Image.open(prompts[i].image).convert("RGB") for i in idx]
                inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
            else:
                tok = self.processor if self.is_vlm else self.tokenizer
                inputs = tok(text=texts, padding=True, return_tensors="pt")
            # pixel values come out of the image processor as fp32; a bf16/fp16 model wants its own dtype
            inputs = {k: (v.to(self.device, self.model.dtype) if v.is_floating_point() else v.to(self.device))
                      if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
            with torch.no_grad():
                gen = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos_token_ids)
            new = gen[:, inputs["input_ids"].shape[1]:]
            for j, text in zip(idx, self.tokenizer.batch_decode(new, skip_special_tokens=True)):
                out[j] = text.strip()
        return out


def read_done(path: Path) -> dict[str, dict]:
    """Records already written to `path`, by id. A line cut short by an interruption is
    dropped and the file truncated to the last complete line."""
    done: dict[str, dict] = {}
    if not path.is_file():
        return done
    good = 0
    with path.open("rb") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
                if not line.endswith(b"\n"):
                    raise ValueError("incomplete line")
            except ValueError:
                break
            done[rec["id"]] = rec
            good += len(line)
    if good != path.stat().st_size:
        with path.open("r+b") as fh:
            fh.truncate(good)
    return done


def _batches(seq: Sequence, n: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def run_generation(prompts: Sequence[Prompt], generator: Generator, out_path: Path, batch_size: int = 8,
                   progress: bool = True, on_batch: Callable[[int], None] | None = None) -> dict[str, str]:
    """Generate for every prompt not yet in `out_path` (JSONL of {"id", "prediction"}), appending
    and fsyncing after each batch; returns all predictions by id."""
    from tqdm import tqdm

    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = read_done(out_path)
    todo = [p for p in prompts if p.id not in done]
    preds = {k: v["prediction"] for k, v in done.items()}
    with out_path.open("a", encoding="utf-8") as fh, tqdm(total=len(prompts), initial=len(prompts) - len(todo),
                                                          desc="generate", unit="item", disable=not progress) as bar:
        for batch in _batches(todo, batch_size):
            texts = generator.generate(batch)
            if len(texts) != len(batch):
                raise GenerationError(f"generator returned {len(texts)} outputs for {len(batch)} prompts")
            for p, t in zip(batch, texts):
                fh.write(json.dumps({"id": p.id, "prediction": t}, ensure_ascii=False) + "\n")
                preds[p.id] = t
            fh.flush()
            os.fsync(fh.fileno())
            bar.update(len(batch))
            if on_batch:
                on_batch(len(batch))
    return preds
