"""Delta sources: where ΔW comes from, read in bounded chunks.

A source yields, per tensor and element range, the pair ``(x, x_base)`` whose fp32 difference is
the delta (see ``backends.reference.delta_f32``):

- ``delta``: dense delta safetensors (a file, or a directory of shards): ``x`` = stored values.
- ``checkpoint``: a fine-tuned checkpoint minus ``base``: ``x`` = fine-tuned chunk, ``x_base`` = base
  chunk. When the two dtypes differ both are upcast to fp32 (exact), and ``dtype()`` says fp32.
- ``lora``: a PEFT LoRA adapter: ``x`` = s·B@A materialised in fp32 for the rows the range touches
  only. Tensors saved in full in the adapter (``modules_to_save``, trained biases) give
  ``x`` = saved chunk, ``x_base`` = base chunk.

``read()`` returns views into buffers owned by the source and reused by the next ``read()``; it
never materialises a whole tensor unless the range covers it. Every problem is an ``SmfaError`` that
names the file and, where relevant, the tensor. ``close()`` never closes the ``base`` checkpoint it
was given (the caller owns it).

The package, one module per concern: ``base`` (the protocol, file names, scratch buffers),
``dense``, ``checkpoint``, ``lora_config`` (what an adapter config may say), ``lora_tiling``
(the one LoRA expansion), ``lora``, ``masked``; ``detect`` opens a path of any kind.
"""

from __future__ import annotations

from .base import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    ADAPTER_WEIGHTS_BIN,
    KINDS,
    MASK_FILE,
    MASKED_WEIGHTS,
    DeltaSource,
)
from .checkpoint import CheckpointDeltaSource
from .dense import DenseDeltaSource
from .detect import detect_kind, open_source
from .lora import LoraSource
from .lora_tiling import LORA_TILE_ELEMS
from .masked import MaskedAdapterSource

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "ADAPTER_WEIGHTS_BIN",
    "KINDS",
    "LORA_TILE_ELEMS",
    "CheckpointDeltaSource",
    "DeltaSource",
    "DenseDeltaSource",
    "LoraSource",
    "MASKED_WEIGHTS",
    "MASK_FILE",
    "MaskedAdapterSource",
    "detect_kind",
    "open_source",
]
