"""The field's methods in the real loop, under --lora and --full: one optimiser step lowers
each objective, and what must stay frozen does (LoRA: every base weight, the reference being
the adapter-disabled model; full: the frozen reference copy, and every non-target weight).
task_vector: the merged model is θ_o - α·delta, recomputed here from the saved delta."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from smfa_methods.data import load_jsonl
from smfa_methods.method import Job, TrainConfig
from smfa_methods.models import load_model
from smfa_methods.registry import get_method

FIELD = ["grad_ascent", "npo", "simnpo", "idk_dpo", "rmu", "undial", "task_vector"]
OPTIONS = {"rmu": {"layer": 0, "alpha": 10.0}}  # the tiny model has 2 decoder layers


def _spy(method):
    """The method, recording each training loss it returns (the objective before the step)."""
    seen: list[float] = []

    class Spy(type(method)):
        def compute_loss(self, model, inputs, trainer):
            loss = super().compute_loss(model, inputs, trainer)
            seen.append(loss.item())
            return loss

    return Spy(), seen


@pytest.mark.parametrize("mode", ["lora", "full"])
@pytest.mark.parametrize("name", FIELD)
def test_one_step_lowers_objective_and_frozen_stays_frozen(name, mode, tiny_model, text_data, tmp_path):
    from smfa_methods.trainer import fit

    base = tiny_model("llama")
    method, seen = _spy(get_method(name))
    # the whole forget set in one batch: the step's loss and the re-evaluation see the same data
    cfg = TrainConfig(mode=mode, lr=1e-3 if mode == "full" else 1e-2, max_steps=1, batch_size=4,
                      logging_steps=1, seed=3)
    job = Job(base, tmp_path, load_jsonl(text_data[0]), load_jsonl(text_data[1]), cfg, OPTIONS.get(name, {}))
    dataset = method.make_dataset(job)
    trainer, _, _ = fit(method, job, dataset, tmp_path / "checkpoints")
    assert len(seen) == 1
    batch = trainer.data_collator([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        after = method.compute_loss(trainer.model, batch, trainer).item()
    assert after < seen[0], (name, mode, seen[0], after)

    orig = load_model(base).model
    want = orig.state_dict()
    live = trainer.accelerator.unwrap_model(trainer.model)
    if mode == "lora":
        assert trainer.ref_model is None  # no second copy: the reference is the adapter disabled
        got = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
               for k, v in live.state_dict().items() if "lora_" not in k}
        assert set(got) == set(want)
        for k in want:
            assert torch.equal(got[k], want[k]), k
    else:
        trained = dict(live.named_parameters())
        assert any(not torch.equal(p, want[n]) for n, p in trained.items() if p.requires_grad)
        for n, p in trained.items():
            if not p.requires_grad:
                assert torch.equal(p, want[n]), n
        if method.needs_reference:
            ref = trainer.ref_model
            assert ref is not None and ref is not live and not any(p.requires_grad for p in ref.parameters())
            for n, p in ref.state_dict().items():
                assert torch.equal(p, want[n]), n
        else:
            assert trainer.ref_model is None
    if method.needs_reference:  # the reference, after training, is still the original model
        inputs = batch["forget"]
        with torch.no_grad():
            torch.testing.assert_close(trainer.reference_logits(trainer.model, inputs), orig(**inputs).logits,
                                       rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_task_vector_merges_negated_scaled_delta(mode, tiny_model, text_data, tmp_path):
    from smfa_methods.api import unlearn

    base = tiny_model("llama")
    cfg = TrainConfig(mode=mode, lr=1e-2, max_steps=2, batch_size=2)
    res = unlearn("task_vector", model=base, forget=text_data[0], retain=text_data[1], out=tmp_path, train=cfg,
                  options={"alpha": 0.5})
    b = load_file(str(base / "model.safetensors"))
    got = load_file(str(res.model / "model.safetensors"))
    if mode == "full":
        delta = load_file(str(res.deltas["delta"] / "delta.safetensors"))
    else:  # the adapter's delta by hand: (alpha / r) · B @ A per target
        import json

        ad = load_file(str(res.deltas["delta"] / "adapter_model.safetensors"))
        conf = json.loads((res.deltas["delta"] / "adapter_config.json").read_text())
        s = conf["lora_alpha"] / conf["r"]
        delta = {}
        for k, a in ad.items():
            if "lora_A" in k:
                name = k.replace("base_model.model.", "").replace(".lora_A.weight", ".weight")
                delta[name] = s * ad[k.replace("lora_A", "lora_B")] @ a
    assert delta and set(delta) < set(b)
    assert any(d.abs().max() > 0 for d in delta.values())
    for k in b:
        if k in delta:
            torch.testing.assert_close(got[k], b[k] - 0.5 * delta[k], rtol=0, atol=1e-6)
        else:
            assert torch.equal(got[k], b[k]), k
    load_model(res.model)  # a loadable checkpoint, tokenizer included
