"""Token log-likelihoods of answers under a model, encoded exactly as training encodes them
(`smfa_methods.collators.ChatEncoder`: chat template, image placeholders, answer + end of
turn), so a memorised training answer scores as it was learnt.

For each answer token t: log p(x_t), and the mean and standard deviation of log p over the
model's whole next-token distribution at t (what Min-K%++ standardises by).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ScoredText:
    """One (question, answer, image) to score; the image path is absolute or None."""

    question: str
    answer: str
    image: Path | None = None


@dataclass(frozen=True)
class TokenScores:
    logprobs: list[float]
    mu: list[float]
    sigma: list[float]


class LikelihoodScorer:
    """Scores answers with a loaded model and its processor (or tokenizer)."""

    def __init__(self, model, processor, batch_size: int = 8) -> None:
        from smfa_methods.collators import ChatEncoder

        self.model = model.eval()
        self.processor = processor
        self.encoder = ChatEncoder(processor, max_length=None)
        self.batch_size = batch_size
        self._warned = False

    @classmethod
    def from_path(cls, path: str | Path, batch_size: int = 8) -> LikelihoodScorer:
        from smfa_methods.models import load_model

        loaded = load_model(path)
        tok = getattr(loaded.processor, "tokenizer", loaded.processor)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        return cls(loaded.model, loaded.processor, batch_size)

    def score(self, seqs: Sequence[ScoredText]) -> list[TokenScores]:
        """One TokenScores per sequence, in order. Text-only models drop images (with one
        warning), as generation does."""
        from smfa_methods.data import Example

        out: list[TokenScores | None] = [None] * len(seqs)
        groups: dict[bool, list[int]] = {}
        for i, s in enumerate(seqs):
            groups.setdefault(self.encoder.is_vlm and s.image is not None, []).append(i)
        if not self.encoder.is_vlm and any(s.image is not None for s in seqs) and not self._warned:
            warnings.warn("text-only model: images are dropped when scoring", stacklevel=2)
            self._warned = True
        for with_image, idx in groups.items():
            for b in range(0, len(idx), self.batch_size):
                part = idx[b:b + self.batch_size]
                exs = [Example(seqs[i].question, seqs[i].answer, seqs[i].image if with_image else None) for i in part]
                for i, ts in zip(part, self._batch(exs)):
                    out[i] = ts
        return out  # type: ignore[return-value]

    def _batch(self, examples: list) -> list[TokenScores]:
        import torch

        from smfa_methods.collators import IGNORE_INDEX, collate_encoded

        encs = [self.encoder.encode(ex) for ex in examples]
        batch = collate_encoded(encs, self.encoder.tokenizer.pad_token_id)
        labels = batch.pop("labels")
        param = next(self.model.parameters())
        inputs = {k: (v.to(param.device, param.dtype) if v.is_floating_point() else v.to(param.device))
                  for k, v in batch.items()}
        target = labels[:, 1:].to(param.device)  # position t predicts token t + 1
        mask = target != IGNORE_INDEX
        with torch.no_grad():
            logits = self.model(**inputs).logits[:, :-1]
            # only the answer positions: a real vocabulary x the whole prompt would not fit
            logp = torch.log_softmax(logits[mask].float(), dim=-1)
        tok_lp = logp.gather(-1, target[mask].unsqueeze(-1)).squeeze(-1)
        p = logp.exp()
        mu = (p * logp).sum(-1)
        sigma = ((p * logp.square()).sum(-1) - mu.square()).clamp(min=0).sqrt()
        counts = mask.sum(dim=1).tolist()
        out, start = [], 0
        for n in counts:  # the masked rows come out in batch order
            out.append(TokenScores(tok_lp[start:start + n].tolist(), mu[start:start + n].tolist(),
                                   sigma[start:start + n].tolist()))
            start += n
        return out
