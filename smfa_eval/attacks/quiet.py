"""The loggers torchao makes noisy on a CPU machine, in one place.

torchao logs a warning for each CUDA-only extension it cannot load, and torch one for each of
torchao's enum registrations: noise, not a problem. transformers and peft import torchao on
their own whenever it is installed, so the CLI silences these for the whole process
(smfa_cli/__init__.py); library callers get it only around the quantization attack's import.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

NOISY_LOGGERS = ("torchao", "torch.utils._pytree")


def silence_torchao() -> None:
    """Raise the noisy loggers to ERROR for the rest of the process."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def torchao_quiet() -> Iterator[None]:
    """The noisy loggers at ERROR inside the block, restored to their levels after it."""
    levels = [logging.getLogger(n).level for n in NOISY_LOGGERS]
    silence_torchao()
    try:
        yield
    finally:
        for name, level in zip(NOISY_LOGGERS, levels, strict=True):
            logging.getLogger(name).setLevel(level)
