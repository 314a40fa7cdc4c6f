"""A local transformers chat model as judge: same rubrics and strict parser as `openai`,
greedy decoding, loaded like any evaluated model (`HFGenerator`). Replies that do not parse,
and batches whose generation fails, become rows with `error` set."""

from __future__ import annotations

from collections.abc import Sequence

from ..generate import GenerationError, HFGenerator, Prompt
from . import JudgeError, JudgeRequest, JudgeResult
from .rubric import METRICS, parse_score, render


class HFJudge:
    name = "hf"

    def __init__(self, model: str | None = None, max_new_tokens: int = 16, batch_size: int = 8,
                 device: str = "cpu", dtype: str | None = None, prompts_dir: str | None = None) -> None:
        if not model:
            raise JudgeError("hf judge: set model=PATH (a local chat model directory)")
        try:
            self.generator = HFGenerator(model, max_new_tokens=max_new_tokens, device=device, dtype=dtype)
        except GenerationError as exc:
            raise JudgeError(f"hf judge: {exc}") from None
        self.batch_size, self.prompts_dir = max(1, int(batch_size)), prompts_dir

    def score(self, requests: Sequence[JudgeRequest]) -> list[JudgeResult]:
        prompts = [Prompt(id=f"{i}:{m}", text=render(m, r, self.prompts_dir))
                   for i, r in enumerate(requests) for m in METRICS]
        replies: list[str | None] = []
        failures: dict[int, str] = {}
        for s in range(0, len(prompts), self.batch_size):
            batch = prompts[s:s + self.batch_size]
            try:
                replies += self.generator.generate(batch)
            except (RuntimeError, ValueError) as exc:
                # e.g. out of memory on a long prompt: the batch's rows fail (and are retried on a
                # rerun) instead of the whole evaluation
                replies += [None] * len(batch)
                failures.update({s + k: f"generation failed: {type(exc).__name__}: {exc}"[:300]
                                 for k in range(len(batch))})
        results = [JudgeResult() for _ in requests]
        errors: list[list[str]] = [[] for _ in requests]
        for n, (p, reply) in enumerate(zip(prompts, replies)):
            i, m = p.id.split(":")
            try:
                if reply is None:
                    raise ValueError(failures[n])
                setattr(results[int(i)], m, parse_score(reply))
            except ValueError as exc:
                errors[int(i)].append(f"{m}: {exc}")
        for r, errs in zip(results, errors):
            r.error = "; ".join(errs) or None
        return results
