"""`smfa reproduce` with `[protocol] privacy = true` and every attack, on a preset tiny enough
for the test suite: the oracle is trained without the forget profiles, every model gets the
privacy records, attacked models are named METHOD+ATTACK, and the report shows the tables."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from smfa_cli.main import cli
from smfa_eval.reproduce.results import value

pytestmark = pytest.mark.slow

PRESET = """
name = "privacy-test"
description = "plumbing of the privacy steps"
arch = "qwen2_5_vl"

[bench]
profiles = 10
general_images = 2
image_size = 64
holdout = 2

[model]
vocab_size = 384
hidden = 32
layers = 1
heads = 2
kv_heads = 1
intermediate = 64
vision_hidden = 32
vision_layers = 1

[original]
data = ["finetune"]
max_steps = 4
lr = 3e-3
batch_size = 8

[unlearn]
mode = "full"
epochs = 1
lr = 1e-3
batch_size = 8

[methods]
idk = {}
smfa = { k = 2.0 }

[protocol]
splits = ["forget10"]
ablation_split = "forget10"
k_sweep = []
eval_limit = 2
max_new_tokens = 4
privacy = true
attacks = ["relearn", "int8", "int4", "perturb"]
"""


def test_reproduce_with_privacy_and_attacks(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text(PRESET)
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["reproduce", "--preset", str(preset), "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    recs = json.loads((out / "results.json").read_text())
    rows = [json.loads(x) for x in (out / "oracle" / "forget10" / "train.jsonl").read_text().splitlines()]
    forget = json.loads((out / "bench" / "manifest.json").read_text())["splits"]["forget10"]["forget"]
    assert rows and not any(row.get("image", "").endswith(f"{pid}.png") for row in rows for pid in forget)
    q = dict(split="forget10", phrasing="paraphrase")
    for m in ("original", "idk", "oracle", "idk+relearn", "idk+int8", "idk+int4", "idk+perturb"):
        assert value(recs, model=m, set="retain", task="all", metric="utility", **q) is not None, m
        assert value(recs, model=m, set="forget", task="all", metric="mia_auc_loss", **q) is not None, m
        assert value(recs, model=m, set="forget", task="text_memory", metric="rougeL", **q) is not None, m
        assert value(recs, model=m, set="forget", task="text_memory", metric="mcq_acc", **q) is not None, m
    # SMFA's records all carry its k, the forget-quality one too (the k-sweep figure reads it)
    assert all(r.get("k") == 2.0 for r in recs if r["model"] == "smfa")
    assert value(recs, model="smfa+relearn", set="forget", task="all", metric="forget_quality", **q) is not None
    for m in ("original", "idk", "idk+int4", "smfa", "mfa"):
        fq = value(recs, model=m, set="forget", task="all", metric="forget_quality", **q)
        assert fq is not None and 0.0 <= fq <= 1.0, m
    # relearn's "before": the method on the very forget items the attack was evaluated on
    held = dict(split="forget10", phrasing="relearn_heldout", set="forget", metric="rougeL")
    assert value(recs, model="idk", task="text_memory", **held) is not None
    assert value(recs, model="original", task="text_memory", **held) is not None
    assert len([r for r in recs if r["model"] == "original" and r["phrasing"] == "relearn_heldout"]) == 4
    assert all(r.get("k") == 2.0 for r in recs if r["model"] == "smfa" and r["phrasing"] == "relearn_heldout")
    report = (out / "report.md").read_text()
    assert "## Privacy (forget10)" in report and "## Robustness (forget10)" in report and "| idk |" in report
    assert (out / "forget_quality_vs_utility_forget10.png").is_file() and (out / "robustness_forget10.png").is_file()
    r = CliRunner().invoke(cli, ["reproduce", "--preset", str(preset), "--out", str(out), "--no-progress"])
    assert r.exit_code == 0 and "[run ]" not in r.output, r.output  # every step, privacy ones too, is reused


def test_preset_attack_errors_name_the_key(tmp_path):
    import pytest

    from smfa_eval.reproduce.preset import PresetError, load_preset

    for old, new, match in (('attacks = ["relearn", "int8", "int4", "perturb"]', 'attacks = ["int3"]',
                             r"protocol\.attacks.*unknown attack\(s\) \['int3'\]"),
                            ("privacy = true", "privacy = false", r"protocol\.attacks.*needs protocol\.privacy"),
                            ("holdout = 2", "holdout = 2\nholdouts = 1", r"\[bench\] has unknown key"),
                            ("privacy = true", 'privacy = true\noracle_splits = ["forget05"]',
                             r"protocol\.oracle_splits.*must name splits of protocol\.splits"),
                            ('privacy = true\nattacks = ["relearn", "int8", "int4", "perturb"]',
                             'privacy = false\noracle_splits = ["forget10"]',
                             r"protocol\.oracle_splits.*needs protocol\.privacy")):
        p = tmp_path / "p.toml"
        p.write_text(PRESET.replace(old, new))
        with pytest.raises(PresetError, match=match):
            load_preset(str(p))


def test_oracle_splits_limit_the_oracle_and_attacks(tmp_path):
    """Oracle and attacks run on `oracle_splits` only (default: every split); --dry-run says so."""
    from smfa_eval.reproduce.preset import load_preset

    text = PRESET.replace('splits = ["forget10"]', 'splits = ["forget05", "forget10"]')
    p = tmp_path / "p.toml"
    p.write_text(text)
    assert load_preset(str(p)).protocol.oracle_split_list() == ("forget05", "forget10")
    p.write_text(text.replace("privacy = true", 'privacy = true\noracle_splits = ["forget10"]'))
    assert load_preset(str(p)).protocol.oracle_split_list() == ("forget10",)
    r = CliRunner().invoke(cli, ["reproduce", "--preset", str(p), "--dry-run", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "attacks ['relearn', 'int8', 'int4', 'perturb'] on ['forget10']" in r.output
    p.write_text(text.replace('privacy = true\nattacks = ["relearn", "int8", "int4", "perturb"]', "privacy = false"))
    assert load_preset(str(p)).protocol.oracle_split_list() == ()
