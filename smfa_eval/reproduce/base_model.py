"""The reproduction's tokenizer and from-scratch base model.

The tokenizer is a byte-level BPE trained on the benchmark's own text (profiles, every QA
file, the pre-training people) plus the refusal pool and the training phrasings, so that names
and places become a few tokens each instead of being spelled letter by letter (which keeps a
small model from memorising them). The model is a `smfa_methods.testing.tiny` config at the preset's
size, saved like any local checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ..schema import Bench


def corpus(bench: Bench) -> Iterator[str]:
    """Every text the model will read or write, from the benchmark directory, plus the refusal
    pool and the training phrasings (the general corpus)."""
    from smfa_methods.refusals import REFUSALS

    from .. import phrasings

    for key in sorted(bench.manifest.files):
        with bench.path(key).open(encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                yield " ".join(str(v) for k, v in rec.items() if isinstance(v, str) and k not in ("id", "image"))
    yield from REFUSALS
    for answers, questions in phrasings.TRAIN_MEMORY.values():
        yield from answers
        yield from questions


def build_base(bench_dir: str | Path, out: str | Path, *, arch: str, vocab_size: int, seed: int,
               **shape: int) -> Path:
    """Train the tokenizer on `corpus(bench)` and save a random `arch` model of `shape` to `out`."""
    from smfa_methods.testing import tiny

    tok = tiny.build_tokenizer(vocab_size, corpus=list(corpus(Bench(bench_dir, check_images=False))))
    return tiny.make_tiny(arch, out, seed=seed, tokenizer=tok, **shape)
