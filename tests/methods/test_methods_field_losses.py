"""The field's methods (grad_ascent, npo, simnpo, idk_dpo, undial, rmu): each loss equals its
equation on a fixed tiny batch, the expectation computed here with plain math / torch ops."""

from __future__ import annotations

import contextlib
import copy
import math

import pytest
import torch
from stub_model import StubModel

from smfa_methods.methods.grad_ascent import GradAscent
from smfa_methods.methods.idk_dpo import IdkDPO
from smfa_methods.methods.npo import NPO, SimNPO
from smfa_methods.methods.rmu import RMU
from smfa_methods.methods.undial import UNDIAL

V = 4
LN2, LN4 = math.log(2), math.log(4)


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


class StubTrainer:
    """The reference logits are the batch's `stub_ref` (the original model's, by construction)."""

    def __init__(self, method, **opts):
        self.method_options = method.resolve_options(opts)
        self.parts = {}

    def record(self, **parts):
        self.parts.update({k: float(v) for k, v in parts.items()})

    def reference_logits(self, model, inputs):
        return inputs["stub_ref"]


def _batch(target_logit: float, ref_logit: float | None = None) -> dict:
    """2 sequences of 3 tokens; answer tokens: sequence 0 has 2 (positions 0, 1 predict id 1),
    sequence 1 has 1 (position 1 predicts id 1). Those positions put `target_logit` on id 1."""
    def logits(x):
        z = torch.zeros(2, 3, V)
        z[:, :2, 1] = x
        z[1, 0] = torch.tensor([0.0, 0.0, 7.0, 0.0])  # a prompt position: must never count
        return z

    b = {"stub_logits": logits(target_logit), "labels": torch.tensor([[-100, 1, 1], [-100, -100, 1]])}
    if ref_logit is not None:
        b["stub_ref"] = logits(ref_logit)
    return b


RETAIN = _batch(math.log(3))  # p(target) = 3/(3+3) = 1/2 -> CE = ln 2


def test_grad_ascent_is_minus_forget_ce():
    m = GradAscent()
    tr = StubTrainer(m)
    # uniform logits: p(target) = 1/4 at every answer position -> CE = ln 4
    assert m.compute_loss(StubModel(), _batch(0.0), tr).item() == pytest.approx(-LN4)
    assert tr.parts["forget_ce"] == pytest.approx(LN4)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_npo_hand(beta):
    m = NPO()
    tr = StubTrainer(m, beta=beta, retain_weight=0.5)
    # model: p = 1/4 per answer token, reference: p = 1/2 -> log-ratio = -2 ln 2 (2 tokens), -ln 2 (1 token)
    loss = m.compute_loss(StubModel(), {"forget": _batch(0.0, math.log(3)), "retain": RETAIN}, tr)
    npo = -(2 / beta) * (logsig(beta * 2 * LN2) + logsig(beta * LN2)) / 2
    assert tr.parts["npo"] == pytest.approx(npo, rel=1e-6)
    assert loss.item() == pytest.approx(npo + 0.5 * LN2, rel=1e-6)


def test_simnpo_hand_no_reference():
    m = SimNPO()
    tr = StubTrainer(m, beta=2.0, gamma=0.5)
    # log π/|y| = ln(1/4) for both sequences (2 tokens / 2, 1 token / 1); no reference is read
    batch = {"forget": _batch(0.0), "retain": RETAIN}
    loss = m.compute_loss(StubModel(), batch, tr)
    want = -(2 / 2.0) * logsig(2.0 * LN4 - 0.5)
    assert tr.parts["simnpo"] == pytest.approx(want, rel=1e-6)
    assert loss.item() == pytest.approx(want + LN2, rel=1e-6)
    assert not m.needs_reference


def test_idk_dpo_hand():
    m = IdkDPO()
    tr = StubTrainer(m, beta=0.5)
    # preferred (refusal): model p = 1/2, reference 1/4 -> ratio +2 ln 2, +ln 2
    # rejected (true answer): model 1/4, reference 1/2 -> ratio -2 ln 2, -ln 2
    batch = {"idk": _batch(math.log(3), 0.0), "forget": _batch(0.0, math.log(3)), "retain": RETAIN}
    loss = m.compute_loss(StubModel(), batch, tr)
    want = -(2 / 0.5) * (logsig(0.5 * 4 * LN2) + logsig(0.5 * 2 * LN2)) / 2
    assert tr.parts["dpo"] == pytest.approx(want, rel=1e-6)
    assert loss.item() == pytest.approx(want + LN2, rel=1e-6)


def test_idk_dpo_dataset_pairs_refusals_with_true_answers(text_data):
    from smfa_methods.data import load_jsonl
    from smfa_methods.method import Job, TrainConfig
    from smfa_methods.refusals import is_refusal

    job = Job(None, None, load_jsonl(text_data[0]), load_jsonl(text_data[1]), TrainConfig())
    ds = IdkDPO().make_dataset(job)
    for i in range(len(ds)):
        it = ds[i]
        assert it["idk"].question == it["forget"].question and is_refusal(it["idk"].answer)
        assert it["forget"].answer == job.forget[i].answer and it["retain"] in job.retain


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_undial_hand(gamma):
    m = UNDIAL()
    tr = StubTrainer(m, gamma=gamma)
    # model: p = (1/2, 1/6, 1/6, 1/6) on id 1; reference uniform, its id-1 logit lowered by γ:
    # q1 = e^-γ / (e^-γ + 3), the others 1 / (e^-γ + 3); CE(q, p) at each of the 3 answer positions
    q1 = math.exp(-gamma) / (math.exp(-gamma) + 3)
    ce = -(q1 * math.log(1 / 2) + (1 - q1) * math.log(1 / 6))
    loss = m.compute_loss(StubModel(), {"forget": _batch(math.log(3), 0.0), "retain": RETAIN}, tr)
    assert tr.parts["undial"] == pytest.approx(ce, rel=1e-6)
    assert loss.item() == pytest.approx(ce + LN2, rel=1e-6)


class RefTrainer:
    """reference_model(...) yields a fixed other model (what the frozen original would be)."""

    def __init__(self, method, ref, **opts):
        self.method_options = method.resolve_options(opts)
        self.ref, self.parts = ref, {}

    def record(self, **parts):
        self.parts.update({k: float(v) for k, v in parts.items()})

    @contextlib.contextmanager
    def reference_model(self, model):
        yield self.ref


def test_rmu_hand(tiny_model, text_data):
    from smfa_methods.collators import SFTCollator
    from smfa_methods.data import load_jsonl
    from smfa_methods.models import load_model

    loaded = load_model(tiny_model("llama"))
    model = loaded.model.eval()
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    coll = SFTCollator(loaded.processor)
    forget = coll.encode_batch(load_jsonl(text_data[0])[:2])
    retain = coll.encode_batch([load_jsonl(text_data[1])[0], load_jsonl(text_data[0])[3]])  # unequal lengths: padding
    assert (retain["attention_mask"] == 0).any()
    m = RMU()
    tr = RefTrainer(m, ref, layer=0, steering_coeff=3.0, alpha=7.0, seed=4)
    with torch.no_grad():
        loss = m.compute_loss(model, {"forget": forget, "retain": retain}, tr).item()

        def h0(mod, batch):  # output of decoder layer 0 = hidden_states[1]
            return mod(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       output_hidden_states=True).hidden_states[1]

        def masked_mse(h, target, mask):
            per_tok = ((h - target) ** 2).mean(-1)
            return ((per_tok * mask).sum() / mask.sum()).item()

        u = torch.rand(32, generator=torch.Generator().manual_seed(4))
        cu = 3.0 * u / u.norm()
        lf = masked_mse(h0(model, forget), cu, forget["attention_mask"].float())
        lr = masked_mse(h0(model, retain), h0(ref, retain), retain["attention_mask"].float())
    assert lr > 0 and tr.parts["forget_mse"] == pytest.approx(lf, rel=1e-5)
    assert tr.parts["retain_mse"] == pytest.approx(lr, rel=1e-5)
    assert loss == pytest.approx(lf + 7.0 * lr, rel=1e-5)


def test_rmu_layer_option(tiny_model):
    from smfa_methods.errors import MethodError
    from smfa_methods.methods.rmu import decoder_layers, layer_index
    from smfa_methods.models import load_model

    model = load_model(tiny_model("qwen2_5_vl")).model
    layers = decoder_layers(model)
    assert layers is model.model.language_model.layers  # not the vision tower's blocks
    assert layer_index(model, -1) == 0 and layer_index(model, 1) == 1
    with pytest.raises(MethodError, match="out of range; the model has 2 decoder layers"):
        layer_index(model, 2)
