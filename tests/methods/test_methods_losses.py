"""Each method's loss equals its equation on a small hand-checked batch."""

from __future__ import annotations

import math

import pytest
import torch
from stub_model import StubModel

from smfa_methods.losses import answer_kl, ce, token_ce
from smfa_methods.methods.ga_diff import GADiff
from smfa_methods.methods.idk import IdkTuning
from smfa_methods.methods.kl_min import KLMin

V = 4


def _batch(target_logit: float) -> dict:
    """2 sequences of 3 tokens; positions 0,1 predict labels 1,2 (target id 1, prompt -100).
    Every predicting position puts `target_logit` on the target id, 0 elsewhere."""
    logits = torch.zeros(2, 3, V)
    logits[:, :2, 1] = target_logit
    labels = torch.tensor([[-100, 1, 1], [-100, -100, 1]])
    return {"stub_logits": logits, "labels": labels}


# forget: uniform logits -> p(target) = 1/4 -> CE = ln 4
# retain: target logit ln 3 -> p = 3/(3+3) = 1/2 -> CE = ln 2
CE_F, CE_R = math.log(4), math.log(2)
# KL(uniform || (1/2, 1/6, 1/6, 1/6)) per predicting position
KL_HAND = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.25 / (1 / 6))


@pytest.fixture
def batches():
    return {"forget": _batch(0.0), "retain": _batch(math.log(3))}


def test_ce_hand(batches):
    assert ce(StubModel(), batches["forget"]).item() == pytest.approx(CE_F)
    assert ce(StubModel(), batches["retain"]).item() == pytest.approx(CE_R)


def test_ga_diff_eq12(batches, fake_trainer):
    m = GADiff()
    loss = m.compute_loss(StubModel(), batches, fake_trainer(m))
    assert loss.item() == pytest.approx(-CE_F + CE_R)


def test_idk_eq14(batches, fake_trainer):
    m = IdkTuning()
    loss = m.compute_loss(StubModel(), batches, fake_trainer(m))
    assert loss.item() == pytest.approx(CE_F + CE_R)


def test_kl_min_eq13(batches, fake_trainer):
    m = KLMin()
    uniform = lambda inputs: torch.zeros_like(inputs["stub_logits"])  # noqa: E731  original model
    tr = fake_trainer(m, ref_logits=uniform)
    loss = m.compute_loss(StubModel(), batches, tr)
    assert tr.parts["retain_kl"] == pytest.approx(KL_HAND)
    assert loss.item() == pytest.approx(-CE_F + KL_HAND)


def test_kl_is_zero_against_itself_and_direction():
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, 3, 1, 2, 0], [-100, -100, 4, 5, -100]])
    assert answer_kl(logits, logits, labels).item() == pytest.approx(0.0, abs=1e-6)
    ref = torch.randn(2, 5, 7)
    # KL(ref || cur) = sum p_ref (log p_ref - log p_cur), averaged over the 4 predicting positions
    mask = labels[:, 1:] != -100
    p = ref[:, :-1][mask].log_softmax(-1)
    q = logits[:, :-1][mask].log_softmax(-1)
    want = (p.exp() * (p - q)).sum(-1).mean()
    assert answer_kl(ref, logits, labels).item() == pytest.approx(want.item(), rel=1e-5)


def test_retain_weight_option(batches, fake_trainer):
    m = GADiff()
    tr = fake_trainer(m)
    tr.method_options["retain_weight"] = 3.0
    assert m.compute_loss(StubModel(), batches, tr).item() == pytest.approx(-CE_F + 3 * CE_R)


def test_model_loss_is_answer_token_ce(tiny_model, text_data):
    """L(D, θ) = the model's own loss = mean CE over answer tokens only."""
    from smfa_methods.collators import SFTCollator
    from smfa_methods.data import load_jsonl
    from smfa_methods.models import load_model

    loaded = load_model(tiny_model("llama"))
    batch = SFTCollator(loaded.processor).encode_batch(load_jsonl(text_data[0])[:3])
    out = loaded.model(**batch)
    assert out.loss.item() == pytest.approx(token_ce(out.logits, batch["labels"]).item(), rel=1e-5)
