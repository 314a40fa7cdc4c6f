"""Judge through any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp,
DashScope's compatible mode for Qwen-Plus as in the paper, ...). Standard library only.

Every reply that parses is cached on disk under a key that hashes the full request (URL,
model, messages, sampling settings), so a rerun costs nothing. Timeouts, 429s, 5xx and
unparseable replies are retried with exponential backoff; what still fails becomes a
result with `error` set, so no row is ever lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import JudgeError, JudgeRequest, JudgeResult
from .rubric import METRICS, parse_score, render

DEFAULT_CACHE = Path(os.environ.get("SMFA_CACHE_DIR", Path.home() / ".cache" / "smfa")) / "judge"


class _Retryable(Exception):
    pass


class OpenAIJudge:
    name = "openai"

    def __init__(self, base_url: str | None = None, model: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0, concurrency: int = 8,
                 cache_dir: str | None = None, temperature: float = 0.0, max_tokens: int = 16,
                 prompts_dir: str | None = None) -> None:
        self.base_url = (base_url or os.environ.get("SMFA_JUDGE_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.model = model or os.environ.get("SMFA_JUDGE_MODEL")
        if not self.model:
            raise JudgeError("openai judge: set model=... (or SMFA_JUDGE_MODEL)")
        self.api_key = os.environ.get(api_key_env)  # optional: local servers often need none
        self.timeout, self.max_retries, self.backoff = float(timeout), int(max_retries), float(backoff)
        self.concurrency = max(1, int(concurrency))
        self.cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE
        self.temperature, self.max_tokens, self.prompts_dir = temperature, int(max_tokens), prompts_dir
        self.stats = {"http_requests": 0, "cache_hits": 0, "failed": 0}
        self._lock = threading.Lock()

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def score(self, requests: Sequence[JudgeRequest]) -> list[JudgeResult]:
        jobs = [(i, m) for i in range(len(requests)) for m in METRICS]
        results = [JudgeResult() for _ in requests]
        errors: list[list[str]] = [[] for _ in requests]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self._score_one, m, requests[i]): (i, m) for i, m in jobs}
            for fut, (i, m) in futures.items():
                try:
                    setattr(results[i], m, fut.result())
                except Exception as exc:  # any failure is reported on its row
                    self._count("failed")
                    errors[i].append(f"{m}: {exc}")
        for r, errs in zip(results, errors):
            r.error = "; ".join(errs) or None
        return results

    def _body(self, metric: str, req: JudgeRequest) -> dict:
        return {"model": self.model, "messages": [{"role": "user", "content": render(metric, req, self.prompts_dir)}],
                "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _score_one(self, metric: str, req: JudgeRequest) -> float:
        url = f"{self.base_url}/chat/completions"
        body = self._body(metric, req)
        key = hashlib.sha256(json.dumps({"url": url, "body": body}, sort_keys=True).encode()).hexdigest()
        path = self.cache_dir / key[:2] / f"{key}.json"
        if path.is_file():
            try:
                value = parse_score(json.loads(path.read_text())["reply"])
                self._count("cache_hits")
                return value
            except (ValueError, KeyError, OSError):
                pass  # a damaged entry is simply asked again
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1) * (1 + 0.1 * random.random()))
            try:
                reply = self._post(url, body)
                value = parse_score(reply)
            except _Retryable as exc:
                last = str(exc)
                continue
            except ValueError as exc:  # malformed reply: a fresh sample may parse
                last = f"malformed reply: {exc}"
                continue
            self._write_cache(path, url, body, reply)
            return value
        raise RuntimeError(f"gave up after {self.max_retries + 1} attempts: {last}")

    def _post(self, url: str, body: dict) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        self._count("http_requests")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}") from None
            raise RuntimeError(f"HTTP {exc.code} from {url}: {exc.read()[:200]!r}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
        try:
            return json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ValueError(f"not a chat completion: {raw[:80]!r}") from None

    def _write_cache(self, path: Path, url: str, body: dict, reply: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"url": url, "body": body, "reply": reply}))
        os.replace(tmp, path)
