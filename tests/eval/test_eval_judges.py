"""Judges: the plugin registry, the score parser, and the openai judge against a local HTTP
server in this process (timeouts, 500s, malformed replies, cache)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smfa_eval.judges import JudgeError, JudgeRequest, get_judge, get_judges
from smfa_eval.judges.openai_judge import OpenAIJudge
from smfa_eval.judges.rubric import parse_score


class FakeServer:
    """Scripted OpenAI-compatible server. `mode(body_text, attempt) -> (status, payload|None, delay)`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, int] = {}
        self.bodies: list[dict] = []
        self.mode = self.ok
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(raw)
                with server.lock:
                    key = raw.decode()
                    attempt = server.seen.get(key, 0)
                    server.seen[key] = attempt + 1
                    server.bodies.append(body)
                status, content, delay = server.mode(body, attempt)
                time.sleep(delay)
                if content is None:
                    data = b"<html>oops</html>"
                else:
                    data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def ok(body, attempt):
        prompt = body["messages"][0]["content"]
        return 200, ("Score: 7" if "Fact Score" in prompt else "Score: 9"), 0.0

    @property
    def requests(self) -> int:
        return sum(self.seen.values())

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


def make_judge(server, tmp_path, **kw) -> OpenAIJudge:
    opts = dict(base_url=server.url, model="judge-test", timeout=0.5, max_retries=2, backoff=0.01, concurrency=4,
                cache_dir=str(tmp_path / "cache"))
    opts.update(kw)
    return OpenAIJudge(**opts)


REQS = [JudgeRequest(f"Q{i}?", f"Answer {i}.", f"Prediction {i}.", (f"k{i}",)) for i in range(5)]


def test_registry_has_builtins_and_hook_plugins():
    from smfa_methods.hookspecs import hookimpl
    from smfa_methods.plugins import get_plugin_manager

    assert {"heuristic", "openai", "hf"} <= set(get_judges())

    class Echo:
        name = "echo"

        def score(self, requests):
            return []

    class Plugin:
        @hookimpl
        def register_judges(self, register):
            register(Echo)

    get_plugin_manager().register(Plugin())
    assert get_judges()["echo"] is Echo
    assert isinstance(get_judge("echo"), Echo)
    with pytest.raises(JudgeError, match="unknown judge 'nope'"):
        get_judge("nope")
    with pytest.raises(JudgeError, match="bad options"):
        get_judge("heuristic", bogus=1)


def test_duplicate_registration_is_the_plugins_error():
    from smfa_methods.hookspecs import hookimpl
    from smfa_methods.plugins import broken_plugins, get_plugin_manager

    class Dup:
        @hookimpl
        def register_judges(self, register):
            from smfa_eval.judges.heuristic import HeuristicJudge

            register(HeuristicJudge)

    get_plugin_manager().register(Dup(), name="dup")
    from smfa_eval.judges.heuristic import HeuristicJudge

    assert get_judges()["heuristic"] is HeuristicJudge  # the built-in keeps its name
    assert "name 'heuristic' already registered by smfa_eval.judges.builtin" in broken_plugins()["dup"]


@pytest.mark.parametrize("reply, value", [
    ("7", 7.0), (" 10 ", 10.0), ("7/10", 7.0), ("Score: 3", 3.0), ("score = 8.5", 8.5), ("**Score:** 6", 6.0),
    ('{"score": 4}', 4.0), ("The answer matches.\nScore: 10", 10.0), ("0", 0.0),
])
def test_parse_score_accepts(reply, value):
    assert parse_score(reply) == value


@pytest.mark.parametrize("reply", [
    "", "   ", "great", "11", "Score: 12", "-1", "7 or 8", "Score: 7\nScore: 3", '{"score": "7"}', '{"score": true}',
    "I would give it a 7 because", "{not json", "Score: seven",
])
def test_parse_score_rejects_garbage(reply):
    with pytest.raises(ValueError):
        parse_score(reply)


def test_openai_scores_and_cache_makes_reruns_free(server, tmp_path):
    j = make_judge(server, tmp_path)
    res = j.score(REQS)
    assert [(r.fact, r.meaningful, r.error) for r in res] == [(7.0, 9.0, None)] * 5
    assert server.requests == 10 and j.stats["http_requests"] == 10
    body = server.bodies[0]
    assert body["model"] == "judge-test" and body["temperature"] == 0.0
    again = make_judge(server, tmp_path)
    assert [(r.fact, r.meaningful) for r in again.score(REQS)] == [(7.0, 9.0)] * 5
    assert server.requests == 10 and again.stats == {"http_requests": 0, "cache_hits": 10, "failed": 0}
    # the key covers the full request: another model is another request
    make_judge(server, tmp_path, model="other").score(REQS[:1])
    assert server.requests == 12


def test_openai_sends_key_from_env(server, tmp_path, monkeypatch):
    seen = []
    server.mode = lambda body, attempt: (200, "5", 0.0)
    orig = server.httpd.RequestHandlerClass.do_POST

    def spy(handler):
        seen.append(handler.headers.get("Authorization"))
        orig(handler)

    server.httpd.RequestHandlerClass.do_POST = spy
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test")
    make_judge(server, tmp_path, api_key_env="MY_JUDGE_KEY").score(REQS[:1])
    assert seen == ["Bearer sk-test"] * 2


def test_openai_retries_500_and_timeouts(server, tmp_path):
    def flaky(body, attempt):
        if attempt == 0:
            return 500, "Score: 1", 0.0
        if attempt == 1:
            return 200, "Score: 1", 2.0  # longer than the client timeout
        return FakeServer.ok(body, attempt)

    server.mode = flaky
    j = make_judge(server, tmp_path, timeout=0.3)
    res = j.score(REQS[:2])
    assert [(r.fact, r.meaningful, r.error) for r in res] == [(7.0, 9.0, None)] * 2
    assert set(server.seen.values()) == {3}


def test_openai_malformed_replies_are_reported_not_lost(server, tmp_path):
    def mixed(body, attempt):
        prompt = body["messages"][0]["content"]
        if "Prediction 1." in prompt:
            return 200, "I'd say pretty good", 0.0  # garbage score
        if "Prediction 3." in prompt:
            return 200, None, 0.0  # not JSON at all
        if "Prediction 4." in prompt and "Fact Score" in prompt:
            return 503, None, 0.0  # always down
        return FakeServer.ok(body, attempt)

    server.mode = mixed
    j = make_judge(server, tmp_path)
    res = j.score(REQS)
    assert len(res) == len(REQS)
    assert (res[0].fact, res[2].fact) == (7.0, 7.0) and res[0].error is None
    assert res[1].fact is None and res[1].meaningful is None and "malformed" in res[1].error
    assert res[3].fact is None and "not a chat completion" in res[3].error
    assert res[4].fact is None and res[4].meaningful == 9.0 and "HTTP 503" in res[4].error
    assert j.stats["failed"] == 5
    # failures are not cached: a rerun asks again, successes come from the cache
    before = server.requests
    make_judge(server, tmp_path).score(REQS)
    assert server.requests - before == 5 * 3


def test_openai_client_errors_are_not_retried(server, tmp_path):
    server.mode = lambda body, attempt: (400, "bad request", 0.0)
    res = make_judge(server, tmp_path).score(REQS[:1])
    assert "HTTP 400" in res[0].error and res[0].fact is None
    assert list(server.seen.values()) == [1, 1]


def test_openai_unreachable_server_is_reported(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    j = OpenAIJudge(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=0.2, max_retries=1, backoff=0.01,
                    cache_dir=str(tmp_path / "c"))
    res = j.score(REQS[:2])
    assert len(res) == 2 and all(r.fact is None and "gave up after 2 attempts" in r.error for r in res)


def test_openai_needs_a_model(monkeypatch):
    monkeypatch.delenv("SMFA_JUDGE_MODEL", raising=False)
    with pytest.raises(JudgeError, match="model"):
        OpenAIJudge(base_url="http://127.0.0.1:9/v1")


def test_run_eval_with_failing_judge_keeps_rows_and_retries_on_rerun(server, tmp_path, bench_dir, echo_generator):
    from smfa_eval.evaluate import run_eval

    server.mode = lambda body, attempt: ((500, None, 0.0) if "Ground truth: This" in body["messages"][0]["content"]
                                         else FakeServer.ok(body, attempt))
    kw = dict(judge_name="openai", model=None, generator=echo_generator(), limit=2, progress=False)
    s1 = run_eval(bench_dir, "forget10", tmp_path / "run", judge=make_judge(server, tmp_path, max_retries=0), **kw)
    rows = [json.loads(x) for x in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    assert len(rows) == sum(g["n"] for g in s1["groups"].values()) == 12 + 2  # + the unseen-image set
    failed = [r for r in rows if r["judge_error"]]
    assert failed and s1["judge_failed"] == len(failed)
    assert all(r["fact"] is None for r in failed) and all(r["rougeL_f"] is not None for r in rows)
    assert "judgements failed" in (tmp_path / "run" / "table1.md").read_text()
    server.mode = FakeServer.ok
    before = server.requests
    s2 = run_eval(bench_dir, "forget10", tmp_path / "run", judge=make_judge(server, tmp_path), **kw)
    assert s2["judge_failed"] == 0
    # only the failed (fact) judgements were asked again; meaningful ones came from the cache
    assert server.requests - before == len(failed)
