"""The pieces of `smfa reproduce` on hand-made inputs: presets, the step ledger, the ROUGE-L
ceiling, results records, the tuning rule and the claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from smfa_cli.main import cli
from smfa_eval.reproduce.preset import PresetError, load_preset
from smfa_eval.reproduce.report import claims
from smfa_eval.reproduce.results import ceilings, records_from_items, value
from smfa_eval.reproduce.steps import Steps
from smfa_eval.reproduce.tune import select


@pytest.mark.parametrize("name", ["quick", "cpu", "paper"])
def test_shipped_presets_load(name):
    p = load_preset(name)
    assert p.name == name and p.methods and p.protocol.splits


def test_a_methods_lr_is_its_tuned_learning_rate_not_an_option():
    from smfa_eval.reproduce.labels import method_settings

    p = load_preset("cpu")
    assert method_settings(p, "smfa") == (3e-4, {"k": 2.0})
    assert method_settings(p, "manu") == (p.unlearn.lr, {"prune_pct": 3.0})


def _preset(tmp_path, text: str):
    base = (load_preset("quick").source.read_text())
    path = tmp_path / "p.toml"
    path.write_text(base + "\n" + text)
    return path


@pytest.mark.parametrize("extra,match", [
    ("[extra]\nx = 1", "unknown key"),
    ("", None),
])
def test_unknown_top_level_key(tmp_path, extra, match):
    path = _preset(tmp_path, extra)
    if match is None:
        assert load_preset(str(path)).name == "quick"
    else:
        with pytest.raises(PresetError, match=match):
            load_preset(str(path))


@pytest.mark.parametrize("old,new,match", [
    ('data = ["finetune", "general:0.5"]', 'data = ["finetune", "nonsense"]', "source 'nonsense'"),
    ('data = ["finetune", "general:0.5"]', 'data = ["general:1.5"]', r"fraction"),
    ('splits = ["forget10"]', 'splits = ["forget99"]', "forget99"),
    ('smfa = { k = 2.0 }', 'smfa = { kk = 2.0 }', "methods.smfa"),
    ('smfa = { k = 2.0 }', 'smfa = { k = 2.0, lr = 5 }', r"methods.smfa.lr"),
    ('max_steps = 300', 'max_steps = 0', "max_steps"),
    ('epochs = 1', 'epochs = 1\nwarp = 9', r"\[unlearn\] has unknown key"),
    ('max_new_tokens = 24', 'max_new_tokens = nan', "finite"),
    ('hidden = 64', 'hidden = 0', r"positive integers for \['hidden'\]"),
    ('vocab_size = 512', 'vocab_size = 512\nwidth = 3', r"\[model\] has unknown key"),
    ('sequential_methods = ["smfa", "idk"]', 'sequential_methods = ["smfa", "npo"]', "protocol.sequential_methods"),
    ('sequential = 1 ', 'sequential_forget = "all"\nsequential = 1 ', "protocol.sequential_forget"),
    ('sequential = 1 ', 'sequential = 1.5 ', "protocol.sequential"),
])
def test_bad_presets_fail_naming_the_key(tmp_path, old, new, match):
    text = load_preset("quick").source.read_text()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(PresetError, match=match) as exc:
        load_preset(str(path))
    assert str(path) in str(exc.value)


def test_cli_refuses_tuning_on_the_test_seed_and_prints_a_dry_run(tmp_path):
    r = CliRunner().invoke(cli, ["reproduce", "--preset", "quick", "--tune", "--seed", "0", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "test seed" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["reproduce", "--preset", "paper", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "not found on this machine" in r.output and "lora" in r.output
    r = CliRunner().invoke(cli, ["reproduce", "--preset", "nope", "--dry-run"])
    assert r.exit_code == 1 and "no preset 'nope'" in r.output
    assert not list(tmp_path.iterdir())  # nothing written by refused runs


def _share_steps(out: str, own: str, started) -> None:
    """One of two processes sharing a run directory (test below)."""
    import os
    import time

    s = Steps(Path(out), log=lambda _: None)

    def slow(d):
        started.set()
        time.sleep(1.0)
        (d / "pid").write_text(str(os.getpid()))

    s.run("shared", {"v": 1}, slow)
    s.run(own, {}, lambda d: (d / "x").write_text(own), reads=("shared",))


def test_steps_shared_by_two_processes_build_each_step_once(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    started = ctx.Event()
    a = ctx.Process(target=_share_steps, args=(str(tmp_path), "only_a", started))
    a.start()
    assert started.wait(30)  # a holds the lock of "shared" and is building it
    assert Steps(tmp_path, log=lambda _: None).busy("shared")
    b = ctx.Process(target=_share_steps, args=(str(tmp_path), "only_b", ctx.Event()))
    b.start()
    a.join(60)
    b.join(60)
    assert a.exitcode == 0 and b.exitcode == 0
    assert (tmp_path / "shared" / "pid").read_text() == str(a.pid)  # b waited and reused a's step
    ledger = json.loads((tmp_path / "manifest.json").read_text())
    assert set(ledger) == {"shared", "only_a", "only_b"}  # neither process dropped the other's record
    calls = []
    s = Steps(tmp_path, log=lambda _: None)
    s.run("only_b", {}, lambda d: calls.append(d), reads=("shared",))
    assert calls == [] and not s.busy("shared") and not s.busy("never_built")


def test_steps_skip_rerun_and_never_publish_a_failed_step(tmp_path):
    calls = []

    def build(d):
        calls.append(d)
        (d / "x").write_text("1")

    s = Steps(tmp_path, log=lambda _: None)
    s.run("a", {"v": 1}, build)
    s.run("a", {"v": 1}, build)
    assert len(calls) == 1
    Steps(tmp_path, log=lambda _: None).run("a", {"v": 1}, build)  # the ledger survives a restart
    assert len(calls) == 1
    s.run("b", {}, build, reads=("a",))
    s.run("a", {"v": 2}, build)  # changed settings run again ...
    s.run("b", {}, build, reads=("a",))  # ... and so does what reads it
    assert len(calls) == 4

    def boom(d):
        (d / "half").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        s.run("c", {}, boom)
    assert not (tmp_path / "c").exists() and "c" not in json.loads((tmp_path / "manifest.json").read_text())


def test_rouge_ceiling_is_the_training_answer_scored_against_the_reference(tmp_path):
    from smfa_eval.build import build
    from smfa_eval.schema import Bench

    build(tmp_path / "b", profiles=4, seed=0, general_images=2, image_size=64)
    bench = Bench(tmp_path / "b")
    c = ceilings(bench, "eval")
    items = {it.id: it for it in bench.qa("eval")}
    # text-memory birthplace: "N was born in V." is both the training and the reference wording
    assert c["p00000-tm-birthplace"] == pytest.approx(1.0)
    # profession: "The profession of A B is C D." vs "A B works as a C D." (two-word name and job):
    # LCS = 4 of 8 and 7 tokens -> F = 2 * (4/8 * 4/7) / (4/8 + 4/7) = 8/15
    p = next(x for x in bench.profiles() if len(x.name.split()) == 2 and len(x.profession.split()) == 2)
    assert c[f"{p.id}-tm-profession"] == pytest.approx(8 / 15)
    assert all(c[i] == 1.0 for i, it in items.items() if it.task == "image_understanding")
    # the fun fact's parts are trained only inside the fun fact: their ceiling is well below 1
    assert c["p00000-tm-hobby"] < 0.6


def test_records_are_means_per_set_task_and_image_type(tmp_path):
    rows = [{"id": "a", "set": "forget", "task": "image_memory", "image_type": "portrait", "rougeL_f": 0.5,
             "fact": 10.0, "meaningful": 8.0},
            {"id": "b", "set": "forget", "task": "image_memory", "image_type": "portrait", "rougeL_f": 0.25,
             "fact": 0.0, "meaningful": None},
            {"id": "c", "set": "retain", "task": "image_understanding", "image_type": "clinical", "rougeL_f": 1.0,
             "fact": 5.0, "meaningful": 10.0}]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recs = records_from_items(path, model="m", split="forget10", phrasing="paraphrase", seed=3,
                              ceiling={"a": 1.0, "b": 0.5, "c": 1.0}, k=2.0)
    q = dict(model="m", split="forget10", phrasing="paraphrase", set="forget", task="image_memory")
    assert value(recs, metric="rougeL", **q) == 0.375
    assert value(recs, metric="fact", **q) == 5.0
    assert value(recs, metric="meaningful", **q) == 8.0  # a missing judgement is left out, not a zero
    assert value(recs, metric="rougeL_ceiling", **q) == 0.75
    assert value(recs, metric="n", **q) == 2.0
    assert value(recs, metric="fact", model="m", split="forget10", phrasing="paraphrase", set="retain",
                 task="image_understanding", image_type="clinical") == 5.0
    assert all(r["seed"] == 3 and r["k"] == 2.0 for r in recs)
    assert value(recs, metric="fact", model="m", split="forget10", phrasing="paraphrase", set="retain",
                 task="text_memory") is None  # no items, no record


def test_selection_rule_forgets_most_within_the_floors():
    orig = {"forget": 9.0, "retain": 9.0, "understanding": 8.0}
    cands = [{"label": "a", "forget": 1.0, "retain": 7.0, "understanding": 8.0},   # forgets most, retain 0.78x
             {"label": "b", "forget": 3.0, "retain": 8.5, "understanding": 7.5},   # 0.94x, 0.94x
             {"label": "c", "forget": 4.0, "retain": 9.0, "understanding": 8.0}]
    assert select(cands, orig, 0.9, 0.9)["label"] == "b"
    pick = select(cands, orig, 0.99, 0.99)
    assert pick["label"] == "c" and pick["met_floors"]
    none = select(cands[:2], orig, 0.99, 0.99)  # nothing meets the floors: keep the most
    assert none["label"] == "b" and not none["met_floors"]


def _rec(model, split, s, t, v, k=None):
    r = {"model": model, "split": split, "set": s, "task": t, "phrasing": "paraphrase", "metric": "fact", "value": v}
    return {**r, "k": k} if k is not None else r


def test_claims_check_the_numbers_they_print():
    p = load_preset("quick")
    recs = []
    for t, o in (("image_memory", 9.0), ("text_memory", 9.0), ("image_understanding", 8.0)):
        for s in ("forget", "retain"):
            recs.append(_rec("original", "forget10", s, t, o))
            recs.append(_rec("mfa", "forget10", s, t, 1.0))
    for s, vals in (("forget", (2.0, 4.0, 8.0)), ("retain", (8.5, 8.5, 8.0))):
        for t, v in zip(("image_memory", "text_memory", "image_understanding"), vals):
            recs.append(_rec("smfa", "forget10", s, t, v, k=2.0))
            recs.append(_rec("smfa:conflict", "forget10", s, t, v + (3 if s == "forget" else 0), k=2.0))
    recs.append(_rec("smfa@k=8", "forget10", "forget", "image_memory", 1.0, k=8.0))
    recs.append(_rec("smfa@k=8", "forget10", "forget", "text_memory", 6.0, k=8.0))  # mean 3.5 > 3.0 at k=2
    got = {c: (ok, n) for c, ok, n in claims(recs, p)}
    assert got["original forget10 forget I-M Fact >= 8"] == (True, "9.00")
    assert got["original forget10 retain I-U Fact >= 7"][0] is True
    assert got["smfa forget10 forget I-M fact <= 0.5x original"][0] is True
    assert got["smfa forget10 forget T-M fact <= 0.5x original"][0] is True  # 4.0 <= 4.5
    assert got["smfa forget10 retain I-M fact >= 0.9x original"][0] is True  # 8.5 >= 8.1
    assert got["smfa forget10 understanding >= 0.95x original"][0] is True  # 8.0 and 8.0 vs 8.0
    assert got["smfa forget10 forget I-M rougeL <= 0.5x original"][0] is None  # no ROUGE-L records
    assert got["mfa forget10 loses more retain memory and understanding than smfa"][0] is True
    assert got["smfa:conflict forget10 forgets less than smfa"][0] is True
    assert got["smfa:magnitude forget10 forgets less than smfa"][0] is None  # no records: not claimed
    assert got["forget10 forget memory does not rise with k (tolerance 0.25)"][0] is False


def test_publish_copies_small_artefacts_and_refuses_overlap(tmp_path):
    from smfa_eval.reproduce.publish import check_dest, publish

    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    for name in ("results.json", "report.md", "k_sweep.png", "run.json"):
        (run / name).write_text("x")
    (run / "eval" / "big.safetensors").write_text("model")
    dest = publish(run, tmp_path / "results" / "cpu-seed0")
    assert sorted(p.name for p in dest.iterdir()) == ["k_sweep.png", "report.md", "results.json", "run.json"]
    for bad in (run, run / "pub", tmp_path):
        with pytest.raises(ValueError, match="must not contain each other"):
            check_dest(run, bad)
    with pytest.raises(FileNotFoundError, match="no results.json"):
        publish(tmp_path / "results", tmp_path / "elsewhere")
    r = CliRunner().invoke(cli, ["reproduce", "--preset", "quick", "--out", str(run), "--publish", str(run / "p"),
                                 "--dry-run"])
    assert r.exit_code == 1 and "must not contain each other" in r.output


def test_split_override_keeps_the_ablation_split():
    p = load_preset("cpu").with_splits(("forget10",))
    assert p.protocol.splits == ("forget10",) and load_preset("cpu").protocol.splits == ("forget05", "forget10",
                                                                                          "forget15")
    with pytest.raises(PresetError, match="ablation split"):
        load_preset("cpu").with_splits(("forget05",))


def test_llava_onevision_base_and_a_training_stage(tmp_path):
    """--arch llava_onevision: the tokenizer + from-scratch base of a preset's shape load and train
    (every parameter) through the reproduction's own stage function."""
    from smfa_eval.build import build
    from smfa_eval.reproduce.base_model import build_base
    from smfa_eval.reproduce.preset import Stage
    from smfa_eval.reproduce.training import train_stage
    from smfa_eval.schema import Bench
    from smfa_methods.models import load_model

    build(tmp_path / "b", profiles=4, seed=0, general_images=2, image_size=64, rewordings=1)
    bench = Bench(tmp_path / "b")
    shape = {k: v for k, v in load_preset("quick").model.items() if k != "vocab_size"}
    base = build_base(bench.root, tmp_path / "base", arch="llava_onevision", vocab_size=512, seed=0, **shape)
    tok = load_model(base).processor.tokenizer
    name = bench.profiles()[0].name
    assert len(tok(name)["input_ids"]) <= 3, name  # a profile's name is a few tokens, not its letters
    out = tmp_path / "stage"
    out.mkdir()
    info = train_stage(bench, base, Stage(data=("finetune", "reworded_memory:0.5"), max_steps=2, lr=1e-3,
                                          batch_size=4), out, seed=0, progress=False)
    assert info["global_step"] == 2 and info["examples"] == 84 + 50
    assert (out / "model" / "config.json").is_file() and not (out / "checkpoints").exists()


def test_run_json_command_is_what_a_reader_types():
    from smfa_eval.reproduce.runinfo import command_line, cpu_model

    args = ["reproduce", "--preset", "cpu", "--out", "runs/x"]
    assert command_line(["/abs/checkout/smfa_cli/main.py", *args]) == "smfa reproduce --preset cpu --out runs/x"
    assert command_line(["/venv/bin/smfa", *args]) == "smfa reproduce --preset cpu --out runs/x"
    assert command_line(["/tmp/other.py", "a"]) == "other.py a"
    model = cpu_model()
    assert model is None or (isinstance(model, str) and model)
