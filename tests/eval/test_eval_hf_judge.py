"""The `hf` judge on a tiny random causal LM (smfa_methods.tiny), through the real
generation path: garbage replies become per-row errors, scripted parseable replies are used."""

from __future__ import annotations

import json

import pytest

from smfa_eval.evaluate import run_eval
from smfa_eval.judges import JudgeError, JudgeRequest, get_judge

REQS = [
    JudgeRequest("Where was Ada born?", "Ada was born in Lviv.", "Lviv, I think.", ("Lviv",)),
    JudgeRequest("What is Bo's job?", "Bo is a pilot.", "GARBLE GARBLE", ("pilot",)),
    JudgeRequest("When was Cy born?", "Cy was born in 1990.", "In 1990.", ("1990",)),
]


def _script(judge, reply_for) -> None:
    """Make the judge's model answer `reply_for(prompt_text)` then EOS, by overriding its
    logits: the prompt is read at the prefill step (one per generate call), the reply's
    tokens are forced one per decoding step. Everything else is the real generation path."""
    import torch

    gen = judge.generator
    tok, model = gen.tokenizer, gen.model
    state: dict = {"step": 0, "rows": []}

    def read_prompts(module, args, kwargs):
        ids = kwargs["input_ids"]
        if ids.shape[1] > 1:  # prefill: a new batch
            texts = tok.batch_decode(ids, skip_special_tokens=True)
            state["rows"] = [tok.encode(reply_for(t), add_special_tokens=False) + [tok.eos_token_id] for t in texts]
            state["step"] = 0

    def force(module, args, out):
        out = torch.full_like(out, -1e4)
        for row, script in enumerate(state["rows"]):
            out[row, -1, script[min(state["step"], len(script) - 1)]] = 0.0
        state["step"] += 1
        return out

    model.register_forward_pre_hook(read_prompts, with_kwargs=True)
    model.lm_head.register_forward_hook(force)


@pytest.fixture(scope="module")
def llama(tiny_checkpoint):
    return tiny_checkpoint("llama")


def test_random_model_replies_fail_per_row(llama):
    judge = get_judge("hf", model=str(llama), max_new_tokens=4, batch_size=4)
    results = judge.score(REQS)
    assert len(results) == len(REQS)  # no row lost
    for r in results:
        assert r.fact is None and r.meaningful is None
        assert r.error and r.error.startswith("fact: ") and "; meaningful: " in r.error


def test_parseable_replies_are_used(llama):
    judge = get_judge("hf", model=str(llama), max_new_tokens=8, batch_size=3)  # request 1 spans two batches

    def reply(prompt: str) -> str:
        if "GARBLE" in prompt:
            return "no idea"
        return "Score: 7" if "Fact Score" in prompt else "9/10"

    _script(judge, reply)
    a, b, c = judge.score(REQS)
    assert (a.fact, a.meaningful, a.error) == (7.0, 9.0, None)
    assert (c.fact, c.meaningful, c.error) == (7.0, 9.0, None)
    assert b.fact is None and b.meaningful is None
    assert "fact: expected one 'Score: N' line, got 'no idea'" in b.error and "meaningful:" in b.error


def test_generation_failure_becomes_row_errors(llama, monkeypatch):
    judge = get_judge("hf", model=str(llama), max_new_tokens=2, batch_size=2)
    real = judge.generator.generate
    calls = []

    def flaky(prompts):  # the second batch (request 1's two metrics) runs out of memory
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory")
        return ["8" for _ in prompts] if len(calls) == 1 else real(prompts)

    monkeypatch.setattr(judge.generator, "generate", flaky)
    a, b, c = judge.score(REQS)
    assert (a.fact, a.meaningful) == (8.0, 8.0)
    assert b.error and "generation failed: RuntimeError: CUDA out of memory" in b.error
    assert c.error and "generation failed" not in c.error  # garbage from the real model, parsed and rejected


def test_bad_model_dir_is_a_judge_error(tmp_path):
    with pytest.raises(JudgeError, match="hf judge: .*no config.json"):
        get_judge("hf", model=str(tmp_path))


def test_eval_with_hf_judge_keeps_failed_rows(llama, small_bench, tmp_path, echo_generator):
    judge = get_judge("hf", model=str(llama), max_new_tokens=3, batch_size=8)
    out = tmp_path / "run"
    s = run_eval(small_bench, "forget05", out, judge=judge, judge_name="hf", judge_options={"model": str(llama)},
                 generator=echo_generator(), limit=1, batch_size=6, progress=False)
    rows = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert len(rows) == 6 + 1 and all(r["judge_error"] and r["fact"] is None for r in rows)  # + 1 unseen
    assert all(r["rougeL_f"] is not None for r in rows)  # ROUGE-L survives a failed judgement
    assert s["judge_failed"] == 6 + 1 and s["groups"]["forget/text_memory"]["judge_failed"] == 1
    assert "**7 judgements failed**" in (out / "table1.md").read_text()
