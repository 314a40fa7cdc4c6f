"""Loss pieces the methods combine: L(D, θ) is the mean token cross-entropy over answer
tokens (what `model(**inputs).loss` computes with -100 labels), and the KL term of Eq. 13."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .collators import IGNORE_INDEX


def ce(model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    """L(D, θ): mean cross-entropy over the answer tokens of the batch."""
    return model(**inputs).loss


def token_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The same quantity from logits (next-token shift), for tests and custom losses."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX
    )


def answer_kl(ref_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p_θ) per answer-token position (the positions that predict a label),
    averaged over those positions: Eq. 13's average of per-example KL(f_orig || f_θ), taken
    per token so long and short answers weigh the same per token."""
    mask = labels[:, 1:] != IGNORE_INDEX
    ref = F.log_softmax(ref_logits[:, :-1][mask].float(), dim=-1)
    cur = F.log_softmax(logits[:, :-1][mask].float(), dim=-1)
    return F.kl_div(cur, ref, log_target=True, reduction="sum") / mask.sum().clamp(min=1)


def answer_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example sum of log p(answer token) (for sequence-level losses such as NPO)."""
    lab = labels[:, 1:]
    mask = lab != IGNORE_INDEX
    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    tok = lp.gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (tok * mask).sum(-1)


def answer_lengths(labels: torch.Tensor) -> torch.Tensor:
    """Per-example number of answer tokens |y| (the positions `answer_logprob` sums over)."""
    return (labels[:, 1:] != IGNORE_INDEX).sum(-1)


def answer_positions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, target ids) of the positions that predict an answer token, flattened: the
    next-token shift with the prompt and padding dropped."""
    mask = labels[:, 1:] != IGNORE_INDEX
    return logits[:, :-1][mask].float(), labels[:, 1:][mask]
