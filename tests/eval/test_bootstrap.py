"""Bootstrap intervals against cases with a known answer, and their place in the records,
Table 1 and the paired-difference table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smfa_eval.bootstrap import bootstrap_ci, paired_bootstrap
from smfa_eval.reproduce.report import table1
from smfa_eval.reproduce.results import find, records_from_items
from smfa_eval.reproduce.uncertainty import paired_records, paired_table, seed_spread


@pytest.mark.parametrize("vals", [[0.62] * 40, [7.0], [0.0] * 3])
def test_a_constant_metric_has_a_zero_width_interval(vals):
    assert bootstrap_ci(vals, "k") == (vals[0], vals[0])


def test_intervals_from_a_known_distribution_cover_the_mean_at_the_nominal_rate():
    rng = np.random.default_rng(7)
    for draw, mean in ((lambda: rng.normal(2.0, 1.0, 60), 2.0), (lambda: 10.0 * (rng.random(80) < 0.3), 3.0)):
        hits = 0
        for i in range(300):
            lo, hi = bootstrap_ci(draw(), f"cover{i}", n_boot=1000)
            hits += lo <= mean <= hi
        # nominal 0.95; the percentile bootstrap runs slightly under it at these n. 300 trials: sd 0.013
        assert 0.91 <= hits / 300 <= 0.98, hits


def test_interval_width_matches_the_standard_error():
    x = np.random.default_rng(3).normal(0.0, 1.0, 400)
    lo, hi = bootstrap_ci(x, "se")
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert (hi - lo) / 2 == pytest.approx(1.96 * se, rel=0.1)
    assert lo < x.mean() < hi


def test_seeded_by_the_key():
    x = list(np.random.default_rng(1).random(30))
    assert bootstrap_ci(x, "a") == bootstrap_ci(x, "a") != bootstrap_ci(x, "b")


def test_paired_bootstrap_on_a_known_difference():
    rng = np.random.default_rng(11)
    a = rng.normal(0.0, 1.0, 100)
    # constant shift: exactly known, zero width
    p = paired_bootstrap(dict(enumerate(a)), dict(enumerate(a + 0.25)), "c")
    assert (p.diff, p.ci_low, p.ci_high, p.n) == pytest.approx((0.25, 0.25, 0.25, 100))
    # shift plus small per-item noise: the interval holds 0.3, excludes 0, and is far narrower
    # than the separate intervals of the two means (the items' own spread cancels)
    b = a + 0.3 + rng.normal(0.0, 0.05, 100)
    p = paired_bootstrap(dict(enumerate(a)), dict(enumerate(b)), "n")
    assert p.ci_low < 0.3 < p.ci_high and not p.includes_zero
    lo_a, hi_a = bootstrap_ci(a, "a")
    assert (p.ci_high - p.ci_low) < 0.1 * (hi_a - lo_a)
    # the same values in another order: mean difference 0, the interval includes it
    p = paired_bootstrap(dict(enumerate(a)), dict(enumerate(a[::-1])), "z")
    assert p.diff == pytest.approx(0.0, abs=1e-12) and p.includes_zero
    # only shared items count
    assert paired_bootstrap({"x": 1.0, "y": 2.0}, {"y": 5.0, "z": 0.0}, "s").diff == 3.0
    with pytest.raises(ValueError, match="share no items"):
        paired_bootstrap({"x": 1.0}, {"y": 1.0}, "s")


def _items(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _row(i, s, t, r, f):
    return {"id": f"{s}{t}{i}", "set": s, "task": t, "image_type": None, "rougeL_f": r, "fact": f,
            "meaningful": 5.0, "refusal": 0.0}


def test_every_record_carries_n_and_an_interval(tmp_path):
    rows = [_row(i, "forget", "text_memory", 0.5, float(i % 3)) for i in range(12)]
    rows += [_row(i, "unseen", "general_understanding", 1.0, 10.0) for i in range(4)]
    recs = records_from_items(_items(tmp_path / "i.jsonl", rows), model="m", split="forget10", phrasing="paraphrase",
                              seed=0, ceiling={})
    assert recs and all({"n", "ci_low", "ci_high"} <= set(r) for r in recs)
    fact = find(recs, model="m", split="forget10", set="forget", task="text_memory", phrasing="paraphrase",
                metric="fact")
    assert fact["n"] == 12 and fact["value"] == 1.0 and fact["ci_low"] < 1.0 < fact["ci_high"]
    rouge = find(recs, model="m", split="forget10", set="forget", task="text_memory", phrasing="paraphrase",
                 metric="rougeL")
    assert rouge["ci_low"] == rouge["ci_high"] == 0.5  # constant
    unseen = find(recs, model="m", split="forget10", set="unseen", task="general_understanding",
                  phrasing="paraphrase", metric="fact")
    assert unseen["n"] == 4 and unseen["value"] == 10.0
    md = table1(recs, ("forget10",))
    assert "0.500 ± 0.000" in md and f"1.00 ± {(fact['ci_high'] - fact['ci_low']) / 2:.2f}" in md


def test_paired_records_and_table_mark_differences_that_include_zero(tmp_path):
    base = [_row(i, "forget", "text_memory", 0.2 * (i % 5), 2.0 * (i % 5)) for i in range(20)]
    better = [{**r, "rougeL_f": r["rougeL_f"] + 0.5} for r in base]  # exactly +0.5 ROUGE-L, same Fact
    items = {"smfa": _items(tmp_path / "a.jsonl", better), "idk": _items(tmp_path / "b.jsonl", base)}
    recs = paired_records(items, reference="smfa", split="forget10", phrasing="paraphrase", seed=0, k=2.0)
    q = dict(model="smfa", vs="idk", split="forget10", set="forget", task="text_memory", phrasing="paraphrase")
    r = find(recs, metric="rougeL_diff", **q)
    assert (r["value"], r["ci_low"], r["ci_high"], r["n"], r["k"]) == (0.5, 0.5, 0.5, 20, 2.0)
    assert find(recs, metric="fact_diff", **q)["value"] == 0.0
    assert find(recs, model="smfa", split="forget10", set="forget", task="text_memory", phrasing="paraphrase",
                metric="rougeL_diff") is None  # a difference is never found as a plain score
    md = paired_table(recs, "forget10")
    assert "| smfa − idk | +0.500 [+0.500, +0.500] |" in md
    assert "+0.00 [+0.00, +0.00] ≈" in paired_table(recs, "forget10", "fact")


def test_seed_spread(tmp_path):
    paths = []
    for seed, v in ((0, 4.0), (2, 6.0)):
        rec = {"model": "smfa", "split": "forget10", "set": "forget", "task": "text_memory", "phrasing": "paraphrase",
               "metric": "fact", "value": v, "seed": seed}
        paths.append(tmp_path / f"r{seed}.json")
        paths[-1].write_text(json.dumps([rec]))
    assert "| forget10 | smfa | forget | T-M | 0, 2 | 5.00 ± 1.41 |" in seed_spread(paths)
    from click.testing import CliRunner

    from smfa_cli.main import cli

    r = CliRunner().invoke(cli, ["bench", "spread", *map(str, paths)])
    assert r.exit_code == 0 and "5.00 ± 1.41" in r.output
    (tmp_path / "bad.json").write_text("{")
    r = CliRunner().invoke(cli, ["bench", "spread", str(tmp_path / "bad.json")])
    assert r.exit_code == 1 and "not a results.json" in r.output and "Traceback" not in r.output


def test_collapse_on_unseen_images_is_named_with_its_numbers():
    from smfa_eval.reproduce.utility import collapses, utility_table

    def rec(model, metric, v):
        return {"model": model, "split": "forget10", "set": "unseen", "task": "general_understanding",
                "phrasing": "paraphrase", "metric": metric, "value": v, "seed": 0, "n": 10, "ci_low": v, "ci_high": v}

    recs = [rec("original", "fact", 6.0), rec("smfa", "fact", 5.0), rec("ga_diff", "fact", 1.5),
            rec("ga_diff", "refusal", 0.8)] + [rec(m, "n", 10.0) for m in ("original", "smfa", "ga_diff")]
    assert collapses(recs, ("forget10",)) == [
        "ga_diff collapses on unseen images (forget10): Fact 1.50 vs 6.00 for original (0.25x), over-refusal 0.80"]
    assert "| ga_diff | - | 1.50 ± 0.00 | - | 0.80 ± 0.00 | 10 |" in utility_table(recs, ("forget10",))
    # an original near zero: a halving is noise, nothing is called a collapse
    low = [{**r, "value": 0.3} if r["model"] == "original" and r["metric"] == "fact" else r for r in recs]
    assert collapses([{**r, "value": 0.0} if r["model"] == "ga_diff" else r for r in low], ("forget10",)) == []


def test_table1_leaves_out_models_without_a_value_in_that_phrasing(tmp_path):
    rows = [_row(i, "forget", "text_memory", 0.5, 1.0) for i in range(3)]
    recs = records_from_items(_items(tmp_path / "a.jsonl", rows), model="original", split="forget10",
                              phrasing="template", seed=0, ceiling={})
    recs += records_from_items(_items(tmp_path / "b.jsonl", rows), model="oracle", split="forget10",
                               phrasing="paraphrase", seed=0, ceiling={})  # evaluated on paraphrases only
    md = table1(recs, ("forget10",), phrasing="template")
    assert "| original |" in md and "| oracle |" not in md
    assert "| oracle |" in table1(recs, ("forget10",), phrasing="paraphrase")
