"""The loop's knobs: max_length truncation, bf16 on CPU, fp16/flag errors from our code,
CLI flags reaching TrainingArguments, and gradient accumulation == one big batch."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from click.testing import CliRunner

from smfa_methods.collators import IGNORE_INDEX, ChatEncoder, SFTCollator
from smfa_methods.data import Example, load_jsonl
from smfa_methods.errors import DataError, MethodError
from smfa_methods.method import Job, TrainConfig, accelerator_available
from smfa_methods.models import load_model


def _answer(enc: dict) -> torch.Tensor:
    lab = enc["labels"][0]
    return lab[lab != IGNORE_INDEX]


def test_max_length_text_prompt_cut_from_left(tiny_model):
    proc = load_model(tiny_model("llama")).processor
    ex = Example("Where " * 40 + "was Ada born?", "Ada was born in Lviv.")
    full = ChatEncoder(proc).encode(ex)
    n_ans = len(_answer(full))
    enc = ChatEncoder(proc, max_length=n_ans + 6)
    out = enc.encode(ex)
    assert out["input_ids"].shape[1] == n_ans + 6
    torch.testing.assert_close(out["input_ids"][0], full["input_ids"][0, -(n_ans + 6):])  # the tail, intact
    torch.testing.assert_close(_answer(out), _answer(full))
    assert (enc.truncated_prompts, enc.truncated_answers) == (1, 0)
    roomy = ChatEncoder(proc, max_length=full["input_ids"].shape[1])  # fits exactly: untouched
    torch.testing.assert_close(roomy.encode(ex)["input_ids"], full["input_ids"])
    assert (roomy.truncated_prompts, roomy.truncated_answers) == (0, 0)


def test_max_length_long_answer_cut_at_end_counted_warned_once(tiny_model, caplog):
    proc = load_model(tiny_model("llama")).processor
    ex = Example("Where was Ada born?", "Ada was born in Lviv, Ukraine. " * 10)
    full_ans = _answer(ChatEncoder(proc).encode(ex))
    enc = ChatEncoder(proc, max_length=16)
    with caplog.at_level(logging.WARNING, logger="smfa_methods.collators"):
        outs = [enc.encode(ex) for _ in range(3)]
    for out in outs:
        assert out["input_ids"].shape[1] == 16
        assert out["labels"][0, 0] == IGNORE_INDEX  # one prompt token left to predict the first answer token
        torch.testing.assert_close(_answer(out), full_ans[:15])
    assert enc.truncated_answers == 3
    assert sum("answer longer than --max-length" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("kind", ["qwen2_5_vl", "llava_onevision"])
def test_max_length_never_cuts_image_tokens(kind, tiny_model, vlm_data):
    loaded = load_model(tiny_model(kind))
    image_id = loaded.processor.image_token_id
    ex = load_jsonl(vlm_data[0])[0]
    full = ChatEncoder(loaded.processor).encode(ex)
    n_full, n_img = full["input_ids"].shape[1], int((full["input_ids"] == image_id).sum())
    enc = ChatEncoder(loaded.processor, max_length=n_full - 2)  # the chat header before the image goes
    cut = enc.encode(ex)
    assert cut["input_ids"].shape[1] == n_full - 2 and int((cut["input_ids"] == image_id).sum()) == n_img
    torch.testing.assert_close(_answer(cut), _answer(full))
    start = enc._image_start(full["input_ids"][0])
    tight = ChatEncoder(loaded.processor, max_length=n_full - start - len(_answer(full)) + 3)
    squeezed = tight.encode(ex)  # prompt cut to the image, answer cut to 3 tokens
    assert int((squeezed["input_ids"] == image_id).sum()) == n_img
    torch.testing.assert_close(_answer(squeezed), _answer(full)[:3])
    assert (tight.truncated_prompts, tight.truncated_answers) == (1, 1)
    batch = SFTCollator(loaded.processor, max_length=tight.max_length).encode_batch([ex, load_jsonl(vlm_data[1])[0]])
    with torch.no_grad():
        assert torch.isfinite(loaded.model(**batch).loss)  # image features still match the image tokens
    with pytest.raises(DataError, match=rf"image {ex.image} takes \d+ prompt tokens.*--max-length"):
        ChatEncoder(loaded.processor, max_length=n_img).encode(ex)


def test_bf16_on_cpu_and_max_length_through_the_loop(tiny_model, text_data, tmp_path):
    """TrainConfig(bf16=True) trains under CPU autocast (bf16 logits), losses stay finite,
    and max_length reaches the collator (truncations counted in the result)."""
    from smfa_methods.api import unlearn
    from smfa_methods.methods.idk import IdkTuning

    class Spy(IdkTuning):
        dtypes: list = []

        def compute_loss(self, model, inputs, trainer):
            # accelerate hands outputs back in fp32: look at lm_head's own output instead
            head = trainer.accelerator.unwrap_model(model).get_output_embeddings()
            hook = head.register_forward_hook(lambda _m, _i, out: self.dtypes.append(out.dtype))
            try:
                return super().compute_loss(model, inputs, trainer)
            finally:
                hook.remove()

    spy = Spy()
    cfg = TrainConfig(mode="lora", lr=1e-3, max_steps=3, batch_size=2, bf16=True, max_length=24, logging_steps=1)
    res = unlearn(spy, model=tiny_model("llama"), forget=text_data[0], retain=text_data[1], out=tmp_path, train=cfg)
    assert spy.dtypes and set(spy.dtypes) == {torch.bfloat16}
    assert res.metrics["global_step"] == 3 and math.isfinite(res.metrics["last_log"]["loss"])
    assert res.metrics["truncated"]["prompts"] > 0
    load_model(res.model)


def _cli(args: list[str]):
    from smfa_cli.main import cli

    return CliRunner().invoke(cli, args)


def test_flag_errors_come_from_our_code(tiny_model, text_data, tmp_path):
    base = ["unlearn", "--method", "idk", "--model", str(tiny_model("llama")), "--forget", str(text_data[0]),
            "--retain", str(text_data[1]), "--out", str(tmp_path)]
    cases = [(["--bf16", "--fp16"], "--bf16 and --fp16 are exclusive"), (["--max-length", "1"], "--max-length")]
    # (--grad-accum 0 and the other out-of-range numbers are click's: tests/cli/test_cli_bounds.py)
    if not accelerator_available():
        cases.append((["--fp16"], "--fp16 needs a GPU"))
    for flags, msg in cases:
        res = _cli(base + flags)
        assert res.exit_code == 1 and msg in res.output and "Traceback" not in res.output, (flags, res.output)
    assert not (tmp_path / "run.json").exists()


def test_cli_flags_reach_training_arguments(monkeypatch, tmp_path, text_data, tiny_model):
    import smfa_methods.api as api
    from smfa_methods.method import Result
    from smfa_methods.trainer import training_arguments

    seen = {}
    monkeypatch.setattr(api, "unlearn", lambda method, **kw: seen.update(kw) or Result())
    res = _cli(["unlearn", "--method", "idk", "--model", str(tiny_model("llama")), "--forget", str(text_data[0]),
                "--retain", str(text_data[1]), "--out", str(tmp_path), "--bf16", "--grad-accum", "2",
                "--max-length", "64", "--weight-decay", "0.1", "--warmup-steps", "3", "--max-grad-norm", "0"])
    assert res.exit_code == 0, res.output
    cfg = seen["train"]
    assert (cfg.bf16, cfg.fp16, cfg.grad_accum, cfg.max_length) == (True, False, 2, 64)
    args = training_arguments(cfg, tmp_path)
    assert args.bf16 and not args.fp16 and args.gradient_accumulation_steps == 2
    assert (args.weight_decay, args.warmup_steps, args.max_grad_norm) == (0.1, 3, 0.0)
    assert args.use_cpu == (not accelerator_available())  # bf16 on a CPU-only host is CPU autocast
    with pytest.raises(MethodError, match="--fp16"):
        training_arguments(TrainConfig(fp16=True, bf16=True), tmp_path)


def test_grad_accum_equals_one_big_batch(tiny_model, text_data, tmp_path, monkeypatch):
    """batch 2 x --grad-accum 2 gives the same first gradient, logged loss and update as
    batch 4. Method losses are per-micro-batch token means and the Trainer averages them over
    the accumulation steps, so the two agree exactly when every micro-batch holds as many
    answer tokens; one refusal for all forget examples and one retain answer make that so. Unequal counts would weigh tokens
    differently: the usual mean-of-means semantics of accumulation with custom losses."""
    from transformers import TrainerCallback

    import smfa_methods.methods.idk as idk
    from smfa_methods.refusals import REFUSALS
    from smfa_methods.trainer import fit

    monkeypatch.setattr(idk, "sample_refusals", lambda n, seed=0: [REFUSALS[0]] * n)
    forget = load_jsonl(text_data[0])
    retain = [Example(f"What is the job of person {i}?", "This person works as a pilot.") for i in range(4)]

    class Grads(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    runs = {}
    for bs, ga in ((4, 1), (2, 2)):
        cfg = TrainConfig(mode="full", lr=1e-3, max_steps=1, batch_size=bs, grad_accum=ga, max_grad_norm=0.0,
                          logging_steps=1, seed=5)
        job = Job(tiny_model("llama"), tmp_path / f"{bs}x{ga}", forget, retain, cfg)
        method = idk.IdkTuning()
        cb = Grads()
        trainer, _, original = fit(method, job, method.make_dataset(job), job.out / "checkpoints", callbacks=[cb])
        params = dict(trainer.model.named_parameters())
        runs[bs, ga] = (cb.grads, {n: params[n].detach() - w for n, w in original.items()},
                        trainer.state.log_history[0]["loss"])
    (g1, d1, l1), (g2, d2, l2) = runs[4, 1], runs[2, 2]
    assert set(g1) == set(g2) and all(g.abs().sum() > 0 for g in g1.values())
    for n in g1:
        torch.testing.assert_close(g2[n], g1[n], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(d2[n], d1[n], rtol=1e-4, atol=1e-6)
    assert l2 == pytest.approx(l1, rel=1e-5)
