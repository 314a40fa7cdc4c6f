"""Every privacy metric against a hand-worked example (expectations are written out here,
never computed by the code under test)."""

from __future__ import annotations

import math
import zlib

import pytest

from smfa_eval import privacy_metrics as M


def test_auc_identical_distributions_is_half():
    assert M.roc_auc([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 0.5
    assert M.roc_auc([7.0] * 4, [7.0] * 3) == 0.5  # all ties


def test_auc_separated_and_hand_worked():
    assert M.roc_auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert M.roc_auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    # pairs (member, non-member): 2>1: 1, 2=2: 1/2, 3>1: 1, 3>2: 1 -> 3.5 / 4
    assert M.roc_auc([2.0, 3.0], [1.0, 2.0]) == 0.875
    assert M.mia_auc_gap(0.2) == pytest.approx(0.3) and M.mia_auc_gap(0.875) == 0.375


def test_ks_pvalue_hand_worked():
    assert M.ks_2samp_pvalue([0.1, 0.5, 0.9], [0.1, 0.5, 0.9]) == 1.0
    # D = 1: only the two paths along the border of the 3x3 lattice reach it: 2 / C(6, 3)
    assert M.ks_2samp_pvalue([1, 2, 3], [4, 5, 6]) == pytest.approx(2 / 20)
    assert M.ks_2samp_pvalue([1, 2], [3, 4]) == pytest.approx(2 / 6)
    # D = 1/4 is the smallest possible for n = m = 4: every path has D >= it
    assert M.ks_2samp_pvalue([1, 2, 3, 4], [1, 2, 3, 5]) == pytest.approx(1.0)
    # unequal sizes, D = 1: paths (2 of C(5, 2) = 10) that take all a's or all b's first
    assert M.ks_2samp_pvalue([1, 2], [3, 4, 5]) == pytest.approx(2 / 10)


def test_ks_large_samples_use_the_asymptotic_series():
    a, b = [float(i) for i in range(600)], [float(i) + 1000 for i in range(600)]
    assert len(a) * len(b) > M.EXACT_KS_LIMIT
    assert M.ks_2samp_pvalue(a, b) < 1e-12
    assert M.ks_2samp_pvalue(a, list(a)) == 1.0
    # interleaved samples: D = 1/600, far inside H0
    assert M.ks_2samp_pvalue(a, [x + 0.5 for x in a]) > 0.99
    assert M.forget_quality([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)


def test_loss_and_zlib_scores():
    assert M.loss_score([-1.0, -2.0, -3.0]) == -2.0
    text = "hello hello hello"
    assert M.zlib_score([-1.0, -3.0], text) == pytest.approx(-2.0 / len(zlib.compress(text.encode())))


def test_min_k_scores():
    lp = [-0.1, -5.0, -0.2, -3.0, -0.3]
    assert M.min_k_score(lp, k=0.4) == pytest.approx(-4.0)  # the two lowest: -5, -3
    assert M.min_k_score(lp, k=0.2) == -5.0
    assert M.min_k_score(lp, k=1.0) == pytest.approx(-8.6 / 5)
    # z = (lp - mu) / sigma = (1, -1, 0)
    lp, mu, sigma = [-1.0, -4.0, -2.0], [-2.0, -2.0, -2.0], [1.0, 2.0, 0.5]
    assert M.min_k_pp_score(lp, mu, sigma, k=0.34) == pytest.approx(-1.0)
    assert M.min_k_pp_score(lp, mu, sigma, k=0.67) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="k must be"):
        M.min_k_score(lp, k=0.0)
    with pytest.raises(ValueError, match="one value per token"):
        M.min_k_pp_score(lp, mu[:2], sigma)


def test_mcq_picks_length_normalised_max():
    # sums: -4, -1.5, -2.5 (a sum would pick option 1); means: -1, -1.5, -1.25 -> option 0
    assert M.mcq_pick([[-1.0, -1.0, -1.0, -1.0], [-1.5], [-0.5, -2.0]]) == 0
    assert M.mcq_pick([[-2.0], [-2.0]]) == 0  # a tie goes to the first


def test_truth_ratio_hand_worked():
    ln = math.log
    assert M.truth_ratio([[ln(0.5)]], [[ln(0.25)], [ln(0.25), ln(0.25)]]) == pytest.approx(0.5)
    # geometric mean per option: sqrt(0.5 x 0.125) = 0.25 -> 0.25 / 0.5
    assert M.truth_ratio([[ln(0.5), ln(0.5)]], [[ln(0.5), ln(0.125)]]) == pytest.approx(0.5)
    # two true paraphrases 0.5 and 0.1 (mean 0.3), one false at 0.6 -> 2
    assert M.truth_ratio([[ln(0.5)], [ln(0.1)]], [[ln(0.6)]]) == pytest.approx(2.0)
    assert M.truth_ratio_forget([0.5, 2.0, 1.0]) == pytest.approx(2 / 3)
    assert M.truth_ratio_retain([0.5, 2.0, 0.25]) == pytest.approx(1.25 / 3)


def test_refusal_detector_and_rate():
    assert M.is_refusal("I'm sorry, but I don't know the answer to that.")  # from the pool
    assert M.is_refusal("I have no idea who that is.") or M.is_refusal("I don't know.")
    assert not M.is_refusal("This person was born in Lyon, France.")
    assert M.is_refusal("I don't know, maybe Lyon.", fact=0.0)
    assert not M.is_refusal("I don't know, maybe Lyon.", fact=5.0)  # the judge found the fact
    assert M.refusal_rate([True, False, False, True]) == 0.5


def test_harmonic_mean():
    assert M.harmonic_mean([1.0, 0.5]) == pytest.approx(2 / 3)
    assert M.harmonic_mean([0.4, 0.4, 0.4]) == pytest.approx(0.4)
    assert M.harmonic_mean([0.9, 0.0]) == 0.0
    with pytest.raises(ValueError):
        M.harmonic_mean([])


def test_privacy_records_and_survival():
    from smfa_eval.reproduce.privacy_records import attacked_label, privacy_records, survives

    summary = {"groups": {"forget/text_memory": {"mcq_acc": 0.25, "truth_ratio": 0.9},
                          "retain/text_memory": {"mcq_acc": 1.0, "truth_ratio": None}},
               "privacy": {"forget_quality": 0.3, "mia_auc_loss": 0.55, "mia_auc_zlib": None, "over_refusal": 0.1,
                           "utility": 0.4}}
    recs = privacy_records(summary, model=attacked_label("smfa", "int4"), split="forget10", phrasing="paraphrase",
                           seed=0)
    got = {(r["set"], r["task"], r["metric"]): r["value"] for r in recs}
    assert got == {("forget", "text_memory", "mcq_acc"): 0.25, ("forget", "text_memory", "truth_ratio"): 0.9,
                   ("retain", "text_memory", "mcq_acc"): 1.0, ("forget", "all", "forget_quality"): 0.3,
                   ("forget", "all", "mia_auc_loss"): 0.55, ("retain", "all", "over_refusal"): 0.1,
                   ("retain", "all", "utility"): 0.4}
    assert all(r["model"] == "smfa+int4" and r["seed"] == 0 for r in recs)
    assert privacy_records({"groups": {}}, model="m", split="s", phrasing="p", seed=0) == []
    # original 0.8 -> unlearned 0.2 (0.6 removed); back to 0.45 is 0.25 < 0.3: survives; 0.55 is not
    assert survives(0.2, 0.45, 0.8) is True and survives(0.2, 0.55, 0.8) is False
    # nothing removed (at or above the original): no verdict, not "the attack undid it"
    assert survives(0.8, 0.8, 0.8) is None and survives(0.85, 0.7, 0.8) is None


def test_robustness_table_verdicts():
    from smfa_eval.reproduce.privacy_view import robustness_table

    def rec(model, rouge):
        return [{"model": model, "split": "s", "set": "forget", "task": t, "phrasing": "paraphrase",
                 "metric": "rougeL", "value": rouge, "seed": 0} for t in ("image_memory", "text_memory")]

    records = (rec("original", 0.8) + rec("a", 0.2) + rec("a+int4", 0.45) + rec("b", 0.2) + rec("b+int4", 0.6)
               + rec("c", 0.85) + rec("c+int4", 0.85))
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in robustness_table(records, "s").splitlines()[2:] if line.startswith("| ")}
    int4 = 3 + 3 * 2 + 2  # before R / MCQ / held-out, then relearn and int8 (3 cells each), int4's verdict
    assert {m: cells[int4] for m, cells in rows.items()} == {"a": "yes", "b": "**no**", "c": "n/a"}


def test_mcq_options_prefer_holdout_values():
    from smfa_eval.mcq import options
    from smfa_eval.schema import QAItem

    def qa(i, city, answer=None):
        return QAItem(id=i, task="text_memory", question="Where?", answer=answer or f"X was born in {city}.",
                      attribute="birthplace", keys=[city])

    item = qa("p1-tm", "Lyon")
    pool = [item, qa("p2", "Oslo"), qa("p3", "Rome"), qa("p4", "Kyiv")]
    held = [qa("h1", "Cork"), qa("h2", "Bonn"), qa("h3", "Lyon")]  # a holdout value equal to the truth is skipped
    opts = options([item, qa("p5", "Nice", answer="Somewhere.")], pool, held)
    assert list(opts) == ["p1-tm"]  # "Nice" is not in its answer: not eligible
    ref, *wrong = opts["p1-tm"]
    assert ref == "X was born in Lyon." and len(wrong) == 3
    values = [w.removeprefix("X was born in ").removesuffix(".") for w in wrong]
    assert set(values[:2]) == {"Cork", "Bonn"} and values[2] in {"Oslo", "Rome", "Kyiv"}
    assert options([item], pool, held) == {"p1-tm": opts["p1-tm"]}  # seeded by the item id
    assert len(options([item], pool)["p1-tm"]) == 4  # no holdout: all from the pool


def test_utility_and_group_metrics_hand_worked():
    from smfa_eval.privacy import group_metrics, utility

    def row(s, t, rl, mcq, tr, refusal=False):
        return {"set": s, "task": t, "rougeL_f": rl, "mcq_correct": mcq, "truth_ratio": tr, "refusal": refusal}

    rows = [row("retain", "text_memory", 0.5, 1, 0.5), row("retain", "image_memory", 0.3, 0, 2.0),
            row("retain", "image_understanding", 0.6, None, None), row("forget", "text_memory", 0.9, 1, 0.1)]
    # retain memory: ROUGE-L 0.4, MCQ 0.5, truth ratio mean(max(0, 1 - R)) = (0.5 + 0) / 2 = 0.25;
    # understanding ROUGE-L 0.6 (no MCQ); the forget row is no part of utility
    assert utility(rows) == pytest.approx(4 / (1 / 0.4 + 1 / 0.5 + 1 / 0.6 + 1 / 0.25), abs=1e-6)
    g = [row("forget", "text_memory", 0.0, 1, 0.5, True), row("forget", "text_memory", 0.0, 0, 2.0)]
    assert group_metrics(g, forget_memory=True) == {"mcq_acc": 0.5, "truth_ratio": 0.5, "refusal_rate": 0.5}
    assert group_metrics(g, forget_memory=False)["truth_ratio"] == 0.25


def test_ks_exact_and_asymptotic_agree_near_the_switch():
    import random

    from smfa_eval.privacy_metrics import _ks_numerator

    rng = random.Random(0)
    a, b = [rng.gauss(0, 1) for _ in range(400)], [rng.gauss(0.1, 1) for _ in range(400)]
    exact = M.ks_2samp_pvalue(a, b)  # 160 000 cells: exact
    lam = math.sqrt(400 * 400 / 800) * _ks_numerator(a, b) / (400 * 400)
    # Kolmogorov's series written out: 2 sum (-1)^(k-1) exp(-2 k^2 lam^2)
    asym = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 50))
    assert exact == pytest.approx(asym, abs=0.01)
