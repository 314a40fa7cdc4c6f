"""Chat encoding and batching. The loss covers the answer tokens only: the prompt (chat
template with the user turn, image placeholders expanded by the processor) is labelled -100.

With `max_length`, an example longer than that many tokens (image placeholders included)
loses the start of its prompt; image tokens are never cut (the model needs all of them), and
the answer is shortened (at its end) only when it cannot fit otherwise: each encoder counts
both cases and warns once.

Works for any processor with a chat template and an image processor (LLaVA-OneVision,
Qwen2.5-VL, ...) and for plain tokenizers (causal LMs; "Question: ...\\nAnswer: " when the
tokenizer has no chat template).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch

from .data import Example
from .errors import DataError

IGNORE_INDEX = -100
# Per-token tensors of a prompt encoding (sliced together when the prompt is truncated).
_PER_TOKEN = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")

log = logging.getLogger(__name__)


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

    def __init__(self, processor, max_length: int | None = None):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.is_vlm = hasattr(processor, "image_processor")
        if self.tokenizer.pad_token_id is None:
            raise DataError("the tokenizer has no pad token; set one before training")
        if max_length is not None and max_length < 2:
            raise DataError(f"max_length must be >= 2 (or None for no limit), got {max_length}")
        self.max_length = max_length
        self.truncated_prompts = 0  # examples whose prompt lost its start
        self.truncated_answers = 0  # examples whose answer lost its end

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
        if self.max_length is not None and enc["input_ids"].shape[1] + ans.shape[1] > self.max_length:
            enc, ans = self._truncate(ex, enc, ans)
        n = enc["input_ids"].shape[1]
        enc["input_ids"] = torch.cat([enc["input_ids"], ans], dim=1)
        enc["attention_mask"] = torch.ones_like(enc["input_ids"])
        enc["labels"] = torch.cat([torch.full((1, n), IGNORE_INDEX), ans], dim=1)
        for key in ("mm_token_type_ids", "token_type_ids"):
            if key in enc:  # per-token ids: the answer is text (0)
                enc[key] = torch.cat([enc[key], torch.zeros_like(ans)], dim=1)
        return enc

    def _image_start(self, ids: torch.Tensor) -> int | None:
        """Index of the first image token of a prompt (with a vision-start marker right
        before it, as Qwen-VL writes), or None when the prompt has no image tokens."""
        image_id = getattr(self.processor, "image_token_id", None)
        if image_id is None:
            return None
        hits = (ids == image_id).nonzero()
        if not len(hits):
            return None
        start = int(hits[0])
        marker = self.tokenizer.convert_tokens_to_ids("<|vision_start|>")
        if start > 0 and marker != self.tokenizer.unk_token_id and int(ids[start - 1]) == marker:
            start -= 1
        return start

    def _truncate(self, ex: Example, enc: dict, ans: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """Fit prompt + answer into max_length: cut the prompt from the left (never into its
        image tokens, never below one token: the answer's first token is predicted from
        it), then, only if still too long, the answer's end."""
        limit, n_prompt = self.max_length, enc["input_ids"].shape[1]
        start = self._image_start(enc["input_ids"][0])
        keep = n_prompt - start if start is not None else 1  # prompt tokens that must stay
        if keep + 1 > limit:
            raise DataError(
                f"image {ex.image} takes {keep} prompt tokens, more than --max-length {limit} allows "
                "with an answer; raise --max-length (0 = no limit) or lower the image resolution"
            )
        n_ans = min(ans.shape[1], limit - keep)
        if n_ans < ans.shape[1]:
            self.truncated_answers += 1
            if self.truncated_answers == 1:
                log.warning("answer longer than --max-length %d: truncated at its end (%r...); "
                            "further cases are only counted", limit, ex.answer[:40])
            ans = ans[:, :n_ans]
        cut = n_prompt - min(n_prompt, limit - n_ans)
        if cut:
            self.truncated_prompts += 1
            if self.truncated_prompts == 1:
                log.warning("example longer than --max-length %d: prompt truncated from the left; "
                            "further cases are only counted", limit)
            enc = {k: (v[:, cut:] if k in _PER_TOKEN else v) for k, v in enc.items()}
        return enc, ans


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
    """Batches of {"example": Example} → model inputs with answer-only labels.

    Each distinct example is encoded once and kept (a multi-epoch run on a small model spends
    more time in the image processor than in the model otherwise); examples showing the same
    image share one pixel tensor. `cache_limit` bounds how many are kept."""

    def __init__(self, processor, max_length: int | None = None, cache_limit: int = 50_000):
        self.encoder = ChatEncoder(processor, max_length=max_length)
        self.cache_limit = cache_limit
        self._encoded: dict[Example, dict[str, torch.Tensor]] = {}
        self._pixels: dict[Path, torch.Tensor] = {}

    def _encode(self, ex: Example) -> dict[str, torch.Tensor]:
        enc = self._encoded.get(ex)
        if enc is None:
            enc = self.encoder.encode(ex)
            if ex.image is not None and "pixel_values" in enc:
                enc["pixel_values"] = self._pixels.setdefault(ex.image, enc["pixel_values"])
            if len(self._encoded) < self.cache_limit:
                self._encoded[ex] = enc
        return enc

    def encode_batch(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        return collate_encoded([self._encode(ex) for ex in examples], self.encoder.tokenizer.pad_token_id)

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        return self.encode_batch([it["example"] for it in items])


class PairedCollator(SFTCollator):
    """Batches of {"forget", "retain"} pairs → {"forget": inputs, "retain": inputs}; items with
    more roles (e.g. idk_dpo's {"forget", "idk", "retain"}) get one batch per role."""

    def __call__(self, items: Sequence[dict]) -> dict[str, dict[str, torch.Tensor]]:
        return {role: self.encode_batch([it[role] for it in items]) for role in items[0]}
