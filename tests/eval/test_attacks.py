"""The attacks of `smfa attack`: hand-worked quantization codes, the relearning split, the
perturbed benchmark, and each command end to end on a tiny Qwen2.5-VL (then `smfa report`'s
robustness table)."""

from __future__ import annotations

import json
import random

import pytest
import torch
from click.testing import CliRunner

from smfa_cli.main import cli
from smfa_eval.attacks import AttackError
from smfa_eval.attacks.quantize import quantize_checkpoint, quantize_model, quantize_model_torchao
from smfa_eval.schema import Bench


def _linear(w: list[list[float]]) -> torch.nn.Sequential:
    lin = torch.nn.Linear(len(w[0]), len(w), bias=False)
    lin.weight.data = torch.tensor(w)
    return torch.nn.Sequential(lin)


def test_int8_codes_hand_worked():
    # row 0: scale = max|w| / 127.5 = 1 / 127.5 -> codes 127 (127.5 clamps), -64 (-63.75), 38 (38.25)
    m = _linear([[1.0, -0.5, 0.3], [0.0, 0.0, 0.0]])
    info = quantize_model(m, 8)
    assert info["backend"].startswith("torchao") and info["linears"] == 1
    assert type(m[0].weight) is torch.nn.Parameter  # an ordinary weight again, saved like any other
    expect = torch.tensor([[127.0, -64.0, 38.0], [0.0, 0.0, 0.0]]) / 127.5
    assert torch.allclose(m[0].weight, expect, atol=1e-6)


def test_int4_codes_hand_worked():
    # groups of 4, asymmetric with zero inside the range: [-1, 0, 2, 0.4]: scale 3/15 = 0.2, zero
    # point -8 + 5 = -3, codes -8, -3, 7, -1 (exact). [0.6, 1, 3, 0.8]: the range is [0, 3], not
    # [0.6, 3], so the scale is again 0.2 and 0.6 is exact. Row 1: 0.3 lies between codes -> 0.4.
    rows = [[-1.0, 0.0, 2.0, 0.4, 0.6, 1.0, 3.0, 0.8], [-1.0, 0.0, 2.0, 0.3, 0.6, 1.0, 3.0, 0.8]]
    m = _linear(rows)
    quantize_model_torchao(m, 4, group_size=4)
    w = m[0].weight
    assert w.qdata[0].tolist() == [-8, -3, 7, -1, -5, -3, 7, -4] and w.zero_point[0].tolist() == [-3, -8]
    m2 = _linear(rows)
    quantize_model(m2, 4, group_size=4)
    assert torch.allclose(m2[0].weight[0], torch.tensor([-1.0, 0.0, 2.0, 0.4, 0.6, 1.0, 3.0, 0.8]), atol=1e-6)
    assert m2[0].weight[1, 3].item() == pytest.approx(0.4, abs=1e-6)
    with pytest.raises(ValueError, match="bits must be"):
        quantize_model(_linear([[1.0, 2.0]]), 3)


def test_quantize_model_keeps_lm_head_and_leaves_few_levels(tiny_checkpoint):
    from smfa_methods.models import load_model

    m = load_model(tiny_checkpoint("llama")).model
    head = m.lm_head.weight.clone()
    info = quantize_model(m, 4, group_size=16)
    assert info["linears"] > 0 and torch.equal(m.lm_head.weight, head)
    w = m.model.layers[0].mlp.down_proj.weight
    for row in w.reshape(w.shape[0], -1, 16)[:4]:
        for group in row:
            assert len(torch.unique(group)) <= 16


@pytest.mark.parametrize("bits", [8, 4])
def test_saved_checkpoint_computes_what_the_torchao_model_computes(tiny_checkpoint, tmp_path, bits):
    """The dequantized checkpoint and torchao's quantized model (its own tensor subclasses and
    kernels) give the same logits: the attack evaluates the quantized model, not an imitation."""
    from smfa_methods.models import load_model

    src = tiny_checkpoint("llama")
    ids = torch.tensor([[1, 5, 9, 3, 7, 2]])
    live = load_model(src).model.eval()
    before = live(input_ids=ids).logits
    quantize_model_torchao(live, bits, group_size=16)
    info = quantize_checkpoint(src, tmp_path / "q", bits, group_size=16)
    saved = load_model(tmp_path / "q").model.eval()
    with torch.no_grad():
        a, b = live(input_ids=ids).logits, saved(input_ids=ids).logits
    assert info["linears"] > 0 and not info["skipped"]
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(before, b, atol=1e-4)  # and it is quantized


def test_relearn_split_and_exclusions(small_bench):
    from smfa_eval.attacks.relearn import excluded_eval_ids, relearn_facts
    from smfa_eval.schema import read_qa

    b = Bench(small_bench)
    forget = read_qa(small_bench / b.split("forget05").forget_file, b.root)
    facts = relearn_facts(forget, 0.5, seed=0)
    all_facts = {(it.profile_id, it.attribute) for it in forget}
    assert len(facts) == round(0.5 * len(all_facts)) and facts < all_facts
    assert relearn_facts(forget, 0.5, seed=0) == facts  # seeded
    ex = set(excluded_eval_ids(b, "forget05", facts))
    forget_ids = set(b.split("forget05").forget)
    kept = [it for it in b.qa("eval") if it.profile_id in forget_ids and it.id not in ex]
    assert ex and kept and all((it.profile_id, "fun_fact" if it.attribute in ("talent", "hobby", "food")
                                else it.attribute) not in facts for it in kept)
    with pytest.raises(AttackError, match="--fraction"):
        relearn_facts(forget, 1.0, seed=0)


def test_perturbed_bench(small_bench, tmp_path):
    from PIL import Image

    from smfa_eval.attacks.perturb import perturb_image, perturbed_bench

    src = Image.open(small_bench / "images/portraits/p00000.png")
    a, b = perturb_image(src, random.Random(1)), perturb_image(src, random.Random(1))
    assert a.size == src.size and a.tobytes() == b.tobytes() and a.tobytes() != src.convert("RGB").tobytes()
    before = (small_bench / "eval.jsonl").read_bytes()
    info = perturbed_bench(Bench(small_bench), "forget05", tmp_path / "pb", seed=0)
    assert (small_bench / "eval.jsonl").read_bytes() == before  # the original is untouched
    pb, orig = Bench(tmp_path / "pb"), Bench(small_bench)
    forget = set(orig.split("forget05").forget)
    old = {it.id: it for it in orig.qa("eval")}
    new = {it.id: it for it in pb.qa("eval")}
    assert old.keys() == new.keys() and info["images"] > 0 and info["questions"] > 0
    for iid, it in new.items():
        o = old[iid]
        if it.profile_id not in forget:
            assert it == o
            continue
        assert it.answer == o.answer and it.keys == o.keys
        if it.task == "image_memory":
            assert it.image.startswith("images/perturbed/") and (tmp_path / "pb" / it.image).is_file()
        else:
            assert it.image == o.image  # understanding images keep their pixels
    assert sum(new[i].question != old[i].question for i in new if new[i].profile_id in forget) == info["questions"]


@pytest.fixture
def attack_args(tiny_checkpoint, small_bench, tmp_path):
    def make(kind, out, *extra):
        return [str(a) for a in ["attack", kind, "--model", tiny_checkpoint("qwen2_5_vl"), "--data", small_bench,
                                 "--split", "forget05", "--out", out, "--label", "smfa", "--limit", 1,
                                 "--max-new-tokens", 2, *extra]]
    return make


def test_attack_commands_and_robustness_table(attack_args, tmp_path):
    runs = {}
    for kind, extra, name in (("quantize", ("--bits", "4"), "smfa+int4"), ("quantize", ("--bits", "8"), "smfa+int8"),
                              ("relearn", ("--steps", "1", "--train-batch-size", "2"), "smfa+relearn"),
                              ("perturb", (), "smfa+perturb")):
        out = tmp_path / name
        r = CliRunner().invoke(cli, attack_args(kind, out, *extra))
        assert r.exit_code == 0, r.output
        s = json.loads((out / "eval" / "summary.json").read_text())
        assert s["run"]["method"] == name and (out / "attack.json").is_file()
        runs[name] = out / "eval"
    rec = json.loads((tmp_path / "smfa+relearn" / "attack.json").read_text())
    excluded = set(rec["result"]["excluded"])
    ids = {json.loads(x)["id"] for x in (runs["smfa+relearn"] / "items.jsonl").read_text().splitlines()}
    assert excluded and not ids & excluded
    # a rerun reuses the attacked model; other settings are an error
    r = CliRunner().invoke(cli, attack_args("quantize", tmp_path / "smfa+int4", "--bits", "4"))
    assert r.exit_code == 0 and "reusing" in r.output
    r = CliRunner().invoke(cli, attack_args("quantize", tmp_path / "smfa+int4", "--bits", "4", "--group-size", "8"))
    assert r.exit_code != 0 and "other settings (group_size)" in r.output and "Traceback" not in r.output

    base = tmp_path / "before"
    r = CliRunner().invoke(cli, [str(a) for a in ["eval", "--model", attack_args("x", "y")[3], "--data",
                                                  attack_args("x", "y")[5], "--split", "forget05", "--out", base,
                                                  "--method", "smfa", "--k", 2, "--limit", 1, "--max-new-tokens", 2]])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["report", str(base), *map(str, runs.values()), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    # "smfa (k=2)" before, "smfa+int4" after: paired by method name
    assert "## Robustness (attacks)" in md
    row = next(line for line in md.splitlines() if line.startswith("| smfa [forget05] |"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    # R before, on the relearn run's items, after relearn, int8, int4, perturb
    assert all(cells[i] != "-" for i in (0, 2, 4, 6, 8, 10)), row
    relearn_ids = {json.loads(x)["id"] for x in (runs["smfa+relearn"] / "items.jsonl").read_text().splitlines()}
    before_rows = [json.loads(x) for x in (base / "items.jsonl").read_text().splitlines()]
    mem = [r["rougeL_f"] for r in before_rows if r["set"] == "forget" and r["id"] in relearn_ids
           and r["task"] in ("image_memory", "text_memory")]
    by_task = {}
    for r in before_rows:
        if r["set"] == "forget" and r["id"] in relearn_ids and r["task"] in ("image_memory", "text_memory"):
            by_task.setdefault(r["task"], []).append(r["rougeL_f"])
    assert mem and float(cells[2]) == pytest.approx(sum(sum(v) / len(v) for v in by_task.values()) / len(by_task),
                                                    abs=5e-4)
    assert (tmp_path / "rep" / "robustness.png").is_file()


@pytest.mark.parametrize("extra,match", [(("--split", "forget99"), "no split 'forget99'"),
                                         (("--fraction", "1.5"), "--fraction must be in (0, 1)")])
def test_attack_errors(attack_args, tmp_path, extra, match):
    out = tmp_path / "bad"
    r = CliRunner().invoke(cli, attack_args("relearn", out, *extra))
    assert r.exit_code != 0 and match in r.output and "Traceback" not in r.output, r.output
    assert not out.exists()


def test_attack_with_oracle_eval_adds_forget_quality(attack_args, tmp_path):
    ref = tmp_path / "ref"
    args = attack_args("x", "y")
    r = CliRunner().invoke(cli, ["eval", "--model", args[3], "--data", args[5], "--split", "forget05", "--out",
                                 str(ref), "--limit", "1", "--max-new-tokens", "2", "--privacy"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "q8"
    r = CliRunner().invoke(cli, attack_args("quantize", out, "--bits", "8", "--oracle-eval", ref))
    assert r.exit_code == 0, r.output
    p = json.loads((out / "eval" / "summary.json").read_text())["privacy"]
    assert 0.0 <= p["forget_quality"] <= 1.0 and p["forget_quality_oracle"] == str(ref)
    r = CliRunner().invoke(cli, attack_args("quantize", tmp_path / "q8b", "--oracle-eval", tmp_path))
    assert r.exit_code != 0 and "no items.jsonl" in r.output and not (tmp_path / "q8b").exists()


def test_quantize_without_torchao_is_an_attack_error(monkeypatch):
    """No torchao: an AttackError (one line from the CLI), not an ImportError traceback."""
    import sys

    from smfa_eval.attacks.quantize import _torchao

    monkeypatch.setitem(sys.modules, "torchao", None)  # `import torchao` now raises ImportError
    with pytest.raises(AttackError, match="needs torchao"):
        _torchao()


def test_torchao_loggers_quiet_in_the_cli_and_restored_in_the_library():
    import logging
    import subprocess
    import sys

    from smfa_eval.attacks.quiet import NOISY_LOGGERS, torchao_quiet

    log = logging.getLogger(NOISY_LOGGERS[0])
    before = log.level
    log.setLevel(logging.DEBUG)
    try:
        with torchao_quiet():
            assert log.level == logging.ERROR
        assert log.level == logging.DEBUG  # the library leaves the caller's setting as it was
    finally:
        log.setLevel(before)
    # the CLI package quiets them for the whole process (a fresh interpreter: this one is shared)
    code = f"import logging, smfa_cli; print([logging.getLogger(n).level for n in {NOISY_LOGGERS!r}])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str([logging.ERROR] * len(NOISY_LOGGERS))
