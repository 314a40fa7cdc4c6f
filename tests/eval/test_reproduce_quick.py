"""`smfa reproduce --preset quick` end to end: every artefact is there, the records cover every
model, set, task and phrasing, the original memorises its fine-tuning wordings, and a rerun
skips every finished step."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from smfa_cli.main import cli
from smfa_eval.reproduce.results import value

pytestmark = pytest.mark.slow

MODELS = ("original", "smfa", "idk", "ga_diff", "kl_min", "manu", "mfa", "smfa:conflict", "smfa:magnitude")
# The quick original (64 wide, 300 steps on 10 profiles' templates) reaches 0.86-0.97 ROUGE-L on
# its own fine-tuning questions; a broken training stage (no answer-only loss, frozen
# embeddings, a collator mix-up) stays below 0.3.
TEMPLATE_MEMORY_FLOOR = 0.7


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro") / "run"
    pub = out.parent / "published"
    res = CliRunner().invoke(cli, ["reproduce", "--preset", "quick", "--out", str(out), "--no-progress",
                                   "--publish", str(pub)])
    assert res.exit_code == 0, res.output
    return out, pub, res.output


def test_artefacts(quick):
    out, pub, _ = quick
    for name in ("results.json", "report.md", "run.json", "manifest.json", "k_sweep.png", "understanding_by_type.png",
                 "tradeoff.png"):
        assert (out / name).is_file(), name
        assert (pub / name).is_file(), f"published {name}"
    info = json.loads((out / "run.json").read_text())
    assert info["preset"] == "quick" and info["seed"] == 0 and info["wall_s"]["original"] > 0
    report = (out / "report.md").read_text()
    assert "## The paper's claims, checked" in report and "| smfa:conflict |" in report
    for section in ("## Utility on unseen images", "## Paired differences (forget10, rougeL)",
                    "## Sequential forget requests (forget10)"):
        assert section in report
    assert " ± " in report and (out / "sequential.png").is_file()


def test_records_cover_every_model_set_task_and_phrasing(quick):
    out, _, _ = quick
    recs = json.loads((out / "results.json").read_text())
    assert {"model", "split", "set", "task", "phrasing", "metric", "value", "seed"} <= set(recs[0])
    for m in MODELS:
        for s in ("forget", "retain"):
            for t in ("image_understanding", "image_memory", "text_memory"):
                for ph in ("paraphrase", "template"):
                    for metric in ("rougeL", "rougeL_ceiling", "fact", "meaningful"):
                        v = value(recs, model=m, split="forget10", set=s, task=t, phrasing=ph, metric=metric)
                        assert v is not None, (m, s, t, ph, metric)
    sweep = {r["model"] for r in recs if r["model"].startswith("smfa@")}
    assert sweep == {"smfa@k=1", "smfa@k=8"}
    assert all(r["k"] == 2.0 for r in recs if r["model"] == "smfa")
    # every record carries its item count and a bootstrap interval around its value
    assert all(r["ci_low"] <= r["value"] <= r["ci_high"] and r["n"] >= 1 for r in recs if r.get("vs") is None)
    for m in MODELS:  # the unseen images, scored in every evaluation
        for metric in ("rougeL", "fact", "refusal"):
            assert value(recs, model=m, split="forget10", set="unseen", task="general_understanding",
                         phrasing="paraphrase", metric=metric) is not None, (m, metric)
    # SMFA against every other row, item by item; and the sequential run's points
    assert {r["vs"] for r in recs if r.get("vs")} == set(MODELS) - {"smfa"}
    assert {(r["model"], r["request"]) for r in recs if r.get("request") is not None} == {
        (m, i) for m in ("smfa", "idk") for i in (0, 1)}
    # the paraphrased references are worded unlike the training answers: their ceiling is < 1
    assert value(recs, model="original", split="forget10", set="retain", task="text_memory", phrasing="paraphrase",
                 metric="rougeL_ceiling") < 0.95
    assert value(recs, model="original", split="forget10", set="retain", task="text_memory", phrasing="template",
                 metric="rougeL_ceiling") == 1.0


def test_the_quick_original_memorises_its_fine_tuning_wordings(quick):
    out, _, _ = quick
    recs = json.loads((out / "results.json").read_text())
    vals = [value(recs, model="original", split="forget10", set=s, task=t, phrasing="template", metric="rougeL")
            for s in ("forget", "retain") for t in ("image_memory", "text_memory")]
    assert sum(vals) / len(vals) >= TEMPLATE_MEMORY_FLOOR, vals


def test_rerun_skips_every_step(quick):
    out, _, _ = quick
    res = CliRunner().invoke(cli, ["reproduce", "--preset", "quick", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "[run ]" not in res.output and res.output.count("[skip]") >= 20
