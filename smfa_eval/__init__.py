"""smfa_eval: the S-MLLMUn-style benchmark (data, generation, metrics, judges, reports).

For judge plugin authors: `JudgeError` (a judge that cannot be configured), `JudgeRequest`
and `JudgeResult` (smfa_eval.judges)."""

from .judges import JudgeError, JudgeRequest, JudgeResult

__all__ = ["JudgeError", "JudgeRequest", "JudgeResult"]
