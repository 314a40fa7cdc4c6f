"""Chat encoding and batching. The loss covers the answer tokens only: the prompt (chat
template with the user turn, image placeholders expanded by the processor) is labelled -100.

Works for any processor with a chat template and an image processor (LLaVA-OneVision,
Qwen2.5-VL, ...) and for plain tokenizers (causal LMs; "Question: ...\\nAnswer: " when the
tokenizer has no chat template).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch

from .data import Example
from .errors import DataError

IGNORE_INDEX = -100


@lru_cache(maxsize=256)
def _load_image(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


class ChatEncoder:
    """Example → 1-example tensors (input_ids, attention_mask, labels, image inputs)."""

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.is_vlm = hasattr(processor, "image_processor")
        if self.tokenizer.pad_token_id is None:
            raise DataError("the tokenizer has no pad token; set one before training")

    def prompt(self, ex: Example) -> str:
        """The prompt text up to where the answer starts."""
        template = getattr(self.processor, "chat_template", None) or self.tokenizer.chat_template
        if template is None:
            if ex.image is not None:
                raise DataError(f"example with image {ex.image} but the processor has no chat template")
            return f"Question: {ex.question}\nAnswer: "
        if self.is_vlm:
            content = ([{"type": "image"}] if ex.image is not None else []) + [{"type": "text", "text": ex.question}]
            msgs = [{"role": "user", "content": content}]
            return self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        if ex.image is not None:
            raise DataError(f"example with image {ex.image} but the model is text-only")
        msgs = [{"role": "user", "content": ex.question}]
        return self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)

    def encode_prompt(self, ex: Example) -> dict[str, torch.Tensor]:
        text = self.prompt(ex)
        if self.is_vlm:
            images = [_load_image(ex.image)] if ex.image is not None else None
            enc = self.processor(text=[text], images=images, return_tensors="pt")
        else:
            enc = self.tokenizer([text], return_tensors="pt", add_special_tokens=False)
        return dict(enc)

    def encode(self, ex: Example) -> dict[str, torch.Tensor]:
        """Prompt + answer + end-of-turn; labels are -100 on the prompt. The answer is
        tokenised on its own after the prompt (the template ends with a newline, so the
        split never falls inside a BPE merge)."""
        enc = self.encode_prompt(ex)
        eos = self.tokenizer.eos_token or ""
        ans = self.tokenizer(ex.answer + eos, add_special_tokens=False, return_tensors="pt")["input_ids"]
        n = enc["input_ids"].shape[1]
        enc["input_ids"] = torch.cat([enc["input_ids"], ans], dim=1)
        enc["attention_mask"] = torch.ones_like(enc["input_ids"])
        enc["labels"] = torch.cat([torch.full((1, n), IGNORE_INDEX), ans], dim=1)
        for key in ("mm_token_type_ids", "token_type_ids"):
            if key in enc:  # per-token ids: the answer is text (0)
                enc[key] = torch.cat([enc[key], torch.zeros_like(ans)], dim=1)
        return enc


def collate_encoded(encs: Sequence[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad per-token tensors; concatenate image tensors (LLaVA-style 5-D
    pixel_values are zero-padded along the patch axis: the model reads image_sizes)."""
    width = max(e["input_ids"].shape[1] for e in encs)
    pads = {"input_ids": pad_id, "labels": IGNORE_INDEX}
    out: dict[str, torch.Tensor] = {}
    for key in encs[0].keys() | set().union(*(e.keys() for e in encs)):
        vals = [e[key] for e in encs if key in e]
        per_token = all(v.dim() == 2 and v.shape[1] == e["input_ids"].shape[1]
                        for v, e in zip(vals, (e for e in encs if key in e))) and len(vals) == len(encs)
        if per_token and key not in ("pixel_values", "image_grid_thw", "image_sizes"):
            padded = torch.full((len(vals), width), pads.get(key, 0), dtype=vals[0].dtype)
            for i, v in enumerate(vals):
                padded[i, : v.shape[1]] = v[0]
            out[key] = padded
        elif key == "pixel_values" and vals[0].dim() == 5:
            n = max(v.shape[1] for v in vals)
            out[key] = torch.cat([torch.nn.functional.pad(v, (0, 0, 0, 0, 0, 0, 0, n - v.shape[1])) for v in vals])
        else:
            out[key] = torch.cat(vals)
    return out


class SFTCollator:
    """Batches of {"example": Example} → model inputs with answer-only labels."""

    def __init__(self, processor):
        self.encoder = ChatEncoder(processor)

    def encode_batch(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        return collate_encoded([self.encoder.encode(ex) for ex in examples], self.encoder.tokenizer.pad_token_id)

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        return self.encode_batch([it["example"] for it in items])


class PairedCollator(SFTCollator):
    """Batches of {"forget", "retain"} pairs → {"forget": inputs, "retain": inputs}."""

    def __call__(self, items: Sequence[dict]) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "forget": self.encode_batch([it["forget"] for it in items]),
            "retain": self.encode_batch([it["retain"] for it in items]),
        }
