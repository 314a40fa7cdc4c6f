"""Tiny random models for tests, the demo and the reproduction's from-scratch base, built offline: a byte-level BPE tokenizer
trained with `tokenizers`, PIL image processors, and random LLaVA-OneVision / Qwen2.5-VL /
Llama configs. `make_tiny(kind, out)` saves model + tokenizer/processor with
`save_pretrained`, so the result loads like any local checkpoint (`models.load_model`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..models import PROCESSOR_BASES, processor_class  # noqa: F401 (also the old place of both)

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

KINDS = ("llama", "llava_onevision", "qwen2_5_vl")

# ChatML, compiled with trim_blocks: a newline right after a tag is dropped, so newlines
# that belong to the text are written as {{ '\n' }}.
_TEXT_TEMPLATE = (
    "{% for m in messages %}"
    "{{ '<|im_start|>' + m['role'] + '\n' }}"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _vlm_template(image: str) -> str:
    return _TEXT_TEMPLATE.replace(
        "{% if c['type'] == 'text' %}",
        "{% if c['type'] == 'image' %}{{ '" + image + "' }}{% elif c['type'] == 'text' %}",
    )


_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
]

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "This person was born in Lviv, Ukraine and works as a pilot.",
    "I don't know the answer to that question. I'm not able to help with that.",
    "What is the name of this person? Where does this person live? What is the job?",
    "The individual studied at the University of Otago, New Zealand, and earns 52000 dollars.",
    "Sorry, I cannot share that information. That is not something I know about.",
    "user assistant system image describe the colour of the shirt red green blue yellow",
    "0 1 2 3 4 5 6 7 8 9 10 100 1990 2001 January February March April May June",
]


def build_tokenizer(vocab_size: int = 512, corpus: Iterable[str] | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained offline on `corpus` (default: a small built-in one,
    enough for tests; a model that must learn names needs one trained on their text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4 if corpus is None else corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
    )
    fast.chat_template = _TEXT_TEMPLATE
    return fast


def build_processor(kind: str, tokenizer: PreTrainedTokenizerFast | None = None) -> Any:
    """Tokenizer (llama) or a processor with a PIL image processor (VLMs)."""
    tok = tokenizer or build_tokenizer()
    if kind == "llama":
        return tok
    if kind == "llava_onevision":
        from transformers import LlavaOnevisionImageProcessorPil

        ip = LlavaOnevisionImageProcessorPil(
            size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32},
            image_grid_pinpoints=[[32, 32]],
        )
        tok.chat_template = _vlm_template("<image>")
        return processor_class(kind)(
            image_processor=ip, tokenizer=tok, num_image_tokens=16,
            vision_feature_select_strategy="full", chat_template=tok.chat_template,
            vision_aspect_ratio="anyres_max_1",
        )
    if kind == "qwen2_5_vl":
        from transformers import Qwen2VLImageProcessorPil

        ip = Qwen2VLImageProcessorPil(size={"shortest_edge": 56 * 56, "longest_edge": 112 * 112})
        tok.chat_template = _vlm_template("<|vision_start|><|image_pad|><|vision_end|>")
        return processor_class(kind)(image_processor=ip, tokenizer=tok, chat_template=tok.chat_template)
    raise ValueError(f"unknown tiny model kind {kind!r}; choose from {', '.join(KINDS)}")


def tiny_config(kind: str, *, vocab_size: int, hidden: int = 32, layers: int = 2, eos_id: int | None = None,
                pad_id: int | None = None, image_id: int | None = None, video_id: int | None = None,
                vision_start_id: int | None = None, heads: int = 2, kv_heads: int = 1,
                intermediate: int | None = None, vision_hidden: int = 32, vision_layers: int = 2,
                max_positions: int = 256) -> PretrainedConfig:
    """The config of a tiny random model of `kind` (the one place these shapes are written)."""
    import transformers as tf

    text = dict(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions, tie_word_embeddings=False,
    )
    if kind == "llama":
        return tf.LlamaConfig(**text, eos_token_id=eos_id, pad_token_id=pad_id)
    if kind == "llava_onevision":
        vision = dict(
            model_type="siglip_vision_model", hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
            num_hidden_layers=vision_layers, num_attention_heads=4, image_size=32, patch_size=8,
        )
        text.pop("tie_word_embeddings")
        text.update(bos_token_id=None, eos_token_id=eos_id, pad_token_id=pad_id)
        return tf.LlavaOnevisionConfig(
            vision_config=vision, text_config=dict(model_type="qwen2", **text),
            image_token_index=image_id, video_token_index=video_id,
            vision_feature_layer=-1, vision_feature_select_strategy="full",
            image_grid_pinpoints=[[32, 32]], vision_aspect_ratio="anyres_max_1", tie_word_embeddings=False,
        )
    if kind == "qwen2_5_vl":
        vision = dict(
            depth=vision_layers, hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, num_heads=4,
            out_hidden_size=hidden,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
            fullatt_block_indexes=[vision_layers - 1],
        )
        head_dim = hidden // text["num_attention_heads"]
        half = head_dim // 2  # mrope_section must sum to head_dim / 2
        sec = [half - 2 * (half // 3), half // 3, half // 3]
        text.pop("tie_word_embeddings")
        text.update(bos_token_id=None, eos_token_id=eos_id, pad_token_id=pad_id)
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": sec}
        return tf.Qwen2_5_VLConfig(
            vision_config=vision, text_config=text, image_token_id=image_id,
            video_token_id=video_id, vision_start_token_id=vision_start_id,
            tie_word_embeddings=False,
        )
    raise ValueError(f"unknown tiny model kind {kind!r}; choose from {', '.join(KINDS)}")


def build_config(kind: str, tokenizer: PreTrainedTokenizerFast, hidden: int = 32, layers: int = 2,
                 **shape: Any) -> PretrainedConfig:
    """tiny_config with the vocabulary and special-token ids of `tokenizer` (`shape`: the
    other keyword arguments of tiny_config)."""
    tid = tokenizer.convert_tokens_to_ids
    ids = dict(eos_id=tid("<|im_end|>"), pad_id=tid("<|endoftext|>"))
    if kind == "llava_onevision":
        ids.update(image_id=tid("<image>"), video_id=tid("<video>"))
    elif kind == "qwen2_5_vl":
        ids.update(image_id=tid("<|image_pad|>"), video_id=tid("<|video_pad|>"),
                   vision_start_id=tid("<|vision_start|>"))
    return tiny_config(kind, vocab_size=len(tokenizer), hidden=hidden, layers=layers, **ids, **shape)


def model_class(kind: str) -> type[PreTrainedModel]:
    """The transformers model class of a tiny model `kind` (llama, llava_onevision or qwen2_5_vl)."""
    import transformers as tf

    return {
        "llama": tf.LlamaForCausalLM,
        "llava_onevision": tf.LlavaOnevisionForConditionalGeneration,
        "qwen2_5_vl": tf.Qwen2_5_VLForConditionalGeneration,
    }[kind]


def build_tiny(kind: str, *, seed: int = 0, hidden: int = 32, layers: int = 2,
               tokenizer: PreTrainedTokenizerFast | None = None, **shape: Any) -> tuple[PreTrainedModel, Any]:
    """(model, processor_or_tokenizer): a random fp32 model and its text/image front end
    (`tokenizer`: one of build_tokenizer's; `shape`: tiny_config's other sizes)."""
    proc = build_processor(kind, tokenizer)
    tok = getattr(proc, "tokenizer", proc)
    torch.manual_seed(seed)
    model = model_class(kind)(build_config(kind, tok, hidden, layers, **shape)).to(torch.float32)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model, proc


def make_tiny(kind: str, out: str | Path, *, seed: int = 0, hidden: int = 32, layers: int = 2,
              tokenizer: PreTrainedTokenizerFast | None = None, **shape: Any) -> Path:
    """Build a tiny model and save it (model + tokenizer/processor) under `out`."""
    out = Path(out)
    model, proc = build_tiny(kind, seed=seed, hidden=hidden, layers=layers, tokenizer=tokenizer, **shape)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out
