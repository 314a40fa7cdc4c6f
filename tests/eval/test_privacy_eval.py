"""Holdout profiles in the built benchmark, and the privacy evaluation on a real tiny model:
a model fine-tuned on the forget profiles tells them from the holdout profiles (MIA AUC well
above 0.5), and `smfa eval`'s items/summary carry the new metrics."""

from __future__ import annotations

import json

import pytest

from smfa_eval.schema import SCHEMA_VERSION, Bench, BenchDataError


@pytest.fixture(scope="module")
def hold_bench(tmp_path_factory):
    from smfa_eval.build import build

    out = tmp_path_factory.mktemp("hold") / "b"
    build(out, profiles=6, seed=4, general_images=0, image_size=48, holdout=2)
    return out


def test_holdout_profiles_are_in_no_training_file(hold_bench):
    b = Bench(hold_bench)
    m = b.manifest
    assert SCHEMA_VERSION == "1.2" and m.schema_version == "1.2"
    assert m.holdout == ["h00000", "h00001"]
    from smfa_eval.schema import read_profiles

    hp = read_profiles(b.path("holdout"), b.root)
    assert [p.id for p in hp] == m.holdout
    names = {p.name for p in b.profiles()}
    assert not names & {p.name for p in hp}  # nobody trained looks like a holdout person by name
    for key in ("finetune", "eval", "eval_template", "general"):
        assert not {it.profile_id for it in b.qa(key)} & set(m.holdout), key
    for s in m.splits.values():
        assert not (set(s.forget) | set(s.retain_fewshot)) & set(m.holdout)
    qa, ev = b.qa("holdout_qa"), b.qa("holdout_eval")
    assert {it.profile_id for it in qa} == {it.profile_id for it in ev} == set(m.holdout)
    # the same fine-tuning wordings as the members' forget file: 10 text + 11 image items each
    assert len(qa) == 2 * 21 and all((hold_bench / it.image).is_file() for it in qa if it.image)


def test_holdout_build_is_deterministic_and_leaves_old_files_alone(hold_bench, tmp_path):
    from smfa_eval.build import build

    again, plain = tmp_path / "again", tmp_path / "plain"
    build(again, profiles=6, seed=4, general_images=0, image_size=48, holdout=2)
    build(plain, profiles=6, seed=4, general_images=0, image_size=48)
    for name in ("holdout.jsonl", "holdout_qa.jsonl", "holdout_eval.jsonl", "images/portraits/h00001.png"):
        assert (again / name).read_bytes() == (hold_bench / name).read_bytes()
    for name in ("finetune.jsonl", "eval.jsonl", "profiles.jsonl"):  # holdout adds, never changes
        assert (plain / name).read_bytes() == (hold_bench / name).read_bytes()
    assert Bench(plain).manifest.holdout == [] and "holdout_qa" not in Bench(plain).manifest.files


def test_manifest_holdout_must_not_overlap_a_split(hold_bench, tmp_path):
    import shutil

    b = tmp_path / "bad"
    shutil.copytree(hold_bench, b)
    m = json.loads((b / "manifest.json").read_text())
    m["holdout"] = [m["splits"]["forget05"]["forget"][0]]
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BenchDataError, match=r"manifest\.json: holdout profile\(s\) .* also in split"):
        Bench(b)


@pytest.fixture(scope="module")
def models(hold_bench, tmp_path_factory):
    """(random tiny llama, the same fine-tuned on the forget05 profiles' QA until memorised)."""
    from smfa_methods.api import finetune
    from smfa_methods.method import TrainConfig
    from smfa_methods.tiny import build_tokenizer, make_tiny

    b = Bench(hold_bench)
    corpus = [t for key in ("finetune", "eval", "holdout_qa", "holdout_eval") for it in b.qa(key)
              for t in (it.question, it.answer)]
    base = make_tiny("llama", tmp_path_factory.mktemp("base") / "m", tokenizer=build_tokenizer(512, corpus), hidden=48)
    forget = hold_bench / b.split("forget05").forget_file
    text_only = tmp_path_factory.mktemp("ft") / "forget.jsonl"
    text_only.write_text("".join(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n"
                                 for r in map(json.loads, forget.read_text().splitlines())))
    out = tmp_path_factory.mktemp("ft") / "run"
    cfg = TrainConfig(mode="all", lr=3e-3, max_steps=80, batch_size=8, max_length=0, progress=False)
    finetune(model=base, data=text_only, out=out, train=cfg)
    return base, out / "model"


def test_mia_auc_of_a_model_trained_on_the_forget_set(hold_bench, models):
    from smfa_eval.likelihood import LikelihoodScorer
    from smfa_eval.privacy import mia_aucs, mia_scores
    from smfa_eval.schema import read_qa

    b = Bench(hold_bench)
    members = [it for it in read_qa(hold_bench / b.split("forget05").forget_file, b.root) if it.image is None]
    nonmembers = [it for it in b.qa("holdout_qa") if it.image is None]
    base, trained = models
    aucs = {}
    for name, path in (("base", base), ("trained", trained)):
        s = LikelihoodScorer.from_path(path)
        aucs[name] = mia_aucs(mia_scores(s, b, members), mia_scores(s, b, nonmembers))
    for score in ("loss", "zlib", "mink", "minkpp"):
        assert aucs["trained"][f"mia_auc_{score}"] > 0.9, (score, aucs)
        assert aucs["trained"][f"mia_auc_{score}"] > aucs["base"][f"mia_auc_{score}"], (score, aucs)
    assert aucs["trained"]["mia_gap_loss"] == pytest.approx(aucs["trained"]["mia_auc_loss"] - 0.5)


def test_eval_with_privacy_writes_the_metrics(hold_bench, models, tmp_path):
    from smfa_eval.evaluate import run_eval
    from smfa_eval.judges import get_judge

    _, trained = models
    out = tmp_path / "eval"
    s = run_eval(hold_bench, "forget05", out, judge=get_judge("heuristic"), judge_name="heuristic",
                 model=str(trained), max_new_tokens=4, limit=3, tasks=("text_memory", "image_understanding"),
                 progress=False, privacy=True)
    rows = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert all({"mcq_correct", "truth_ratio", "refusal"} <= set(r) for r in rows)
    assert any(r["mcq_correct"] is not None for r in rows if r["task"] == "text_memory")
    g = s["groups"]["forget/text_memory"]
    assert 0.0 <= g["mcq_acc"] <= 1.0 and 0.0 <= g["truth_ratio"] <= 1.0 and g["refusal_rate"] is not None
    p = s["privacy"]
    assert p["mia_auc_loss"] > 0.9 and p["mia_members"] == 21 and p["mia_nonmembers"] == 42
    assert 0.0 <= p["over_refusal"] <= 1.0 and 0.0 <= p["utility"] <= 1.0 and p["forget_quality"] is None
    mia = [json.loads(x) for x in (out / "mia.jsonl").read_text().splitlines()]
    assert sum(r["member"] for r in mia) == 21 and len(mia) == 63

    # forget quality against itself as the "oracle": identical truth ratios -> p = 1
    from smfa_eval.privacy import add_forget_quality

    assert add_forget_quality(out, out) == 1.0
    assert json.loads((out / "summary.json").read_text())["privacy"]["forget_quality"] == 1.0


@pytest.mark.slow
def test_bench_run_with_a_trained_oracle(tiny_checkpoint, tmp_path):
    """`smfa bench run --oracle-base`: the oracle is trained without the forget profiles,
    evaluated as a row, and every other row gets forget quality and MIA AUCs."""
    from click.testing import CliRunner

    from smfa_cli.main import cli
    from smfa_eval.build import build

    data = tmp_path / "b"
    build(data, profiles=4, seed=1, general_images=0, image_size=48, holdout=1)
    model = tiny_checkpoint("qwen2_5_vl")
    out = tmp_path / "run"
    args = [str(a) for a in ["bench", "run", "--model", model, "--data", data, "--split", "forget05", "--out", out,
                             "--limit", 1, "--max-new-tokens", 2, "--max-steps", 1, "--batch-size", 2,
                             "--method", "idk", "--oracle-base", model, "--oracle-steps", 2,
                             "--attack", "int4", "--attack", "perturb"]]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (out / "oracle" / "train" / "train.jsonl").read_text().splitlines()]
    forget = Bench(data).split("forget05").forget
    names = {p.name for p in Bench(data).profiles() if p.id in forget}
    assert rows and not any(n in row["question"] + row["answer"] for row in rows for n in names)
    assert not {row.get("image") for row in rows} & {f"images/portraits/{pid}.png" for pid in forget}
    for label in ("vanilla", "idk", "idk+int4", "idk+perturb"):
        p = json.loads((out / label / "eval" / "summary.json").read_text())["privacy"]
        assert 0.0 <= p["forget_quality"] <= 1.0 and p["mia_auc_loss"] is not None and p["utility"] is not None
    report = (out / "report" / "report.md").read_text()
    assert "| oracle |" in report and "Forget quality" in report and "| idk+int4 |" in report
    assert "## Robustness (attacks)" in report and "| idk [forget05] |" in report
    r = CliRunner().invoke(cli, args)  # rerun: the oracle is reused
    assert r.exit_code == 0 and "oracle: reusing" in r.output, r.output


def test_bench_run_oracle_errors_before_training(tiny_checkpoint, small_bench, tmp_path):
    from click.testing import CliRunner

    from smfa_cli.main import cli

    model, out = tiny_checkpoint("qwen2_5_vl"), tmp_path / "bad"
    r = CliRunner().invoke(cli, [str(a) for a in ["bench", "run", "--model", model, "--data", small_bench,
                                                  "--out", out, "--method", "idk", "--oracle-base", model,
                                                  "--oracle-model", model]])
    assert r.exit_code != 0 and "not both" in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_excluded_facts_leave_the_mia_members_too(hold_bench, models, tmp_path):
    """A relearning attack's evaluation leaves out the facts it trained on: from the answers
    and from the MIA members (their forget-file rows)."""
    from smfa_eval.evaluate import run_eval
    from smfa_eval.judges import get_judge

    b = Bench(hold_bench)
    forget = set(b.split("forget05").forget)
    ex = [it.id for it in b.qa("eval") if it.profile_id in forget and it.attribute in ("birthplace", "talent")]
    s = run_eval(hold_bench, "forget05", tmp_path / "e", judge=get_judge("heuristic"), judge_name="heuristic",
                 model=str(models[1]), max_new_tokens=2, limit=1, tasks=("text_memory",), progress=False,
                 privacy=True, exclude=ex)
    # birthplace: 1 text + 1 image row; talent counts as the fun fact: 1 text + 1 image row
    assert s["privacy"]["mia_members"] == 21 - 4 and s["run"]["exclude"] == sorted(ex)


def test_holdout_people_differ_from_pretraining_people(tmp_path):
    from smfa_eval.build import build
    from smfa_eval.schema import read_profiles

    build(tmp_path / "b", profiles=4, seed=2, general_images=0, image_size=48, pretrain_people=3, holdout=3)
    b = Bench(tmp_path / "b")
    held = read_profiles(b.path("holdout"), b.root)
    pre = {it.answer for it in b.qa("pretrain")}
    trained_faces = {(p.portrait_attrs and tuple(sorted(p.portrait_attrs.items()))) for p in b.profiles()}
    assert not any(p.name in a for p in held for a in pre)
    assert not trained_faces & {tuple(sorted(p.portrait_attrs.items())) for p in held}


@pytest.mark.parametrize("kind", ["llama", "qwen2_5_vl"])
def test_scorer_matches_a_direct_forward_pass(kind, tiny_checkpoint, small_bench):
    """Each answer token's log-prob, mu and sigma as an unbatched forward pass of the training
    encoding gives them; batching (right padding, images) changes nothing."""
    import torch

    from smfa_eval.likelihood import LikelihoodScorer, ScoredText
    from smfa_methods.collators import ChatEncoder
    from smfa_methods.data import Example

    b = Bench(small_bench)
    image = small_bench / b.qa("eval")[0].image if kind != "llama" else None
    texts = [ScoredText("Where was Ann born?", "Ann was born in Lyon, France.", None),
             ScoredText("Who is this?", "This person is Bo.", image),
             ScoredText("Where does Ann live? Tell me in full.", "Ann lives in Oslo.", None)]
    scorer = LikelihoodScorer.from_path(tiny_checkpoint(kind), batch_size=8)
    got = scorer.score(texts)
    enc = ChatEncoder(scorer.processor)
    for t, g in zip(texts, got):
        e = enc.encode(Example(t.question, t.answer, t.image if kind != "llama" else None))
        labels = e.pop("labels")[0]
        with torch.no_grad():
            logits = scorer.model(**e).logits[0].float()
        pos = [i for i in range(1, len(labels)) if labels[i] != -100]
        want = [torch.log_softmax(logits[i - 1], -1)[labels[i]].item() for i in pos]
        assert len(g.logprobs) == len(pos) and g.logprobs == pytest.approx(want, abs=1e-4)
        dist = torch.softmax(logits[pos[0] - 1], -1)
        lp = torch.log(dist)
        mu = float((dist * lp).sum())
        assert g.mu[0] == pytest.approx(mu, abs=1e-4)
        assert g.sigma[0] == pytest.approx(float(((dist * (lp - mu) ** 2).sum()).sqrt()), abs=1e-4)


def test_eval_cli_privacy_flag(hold_bench, models, tmp_path):
    from click.testing import CliRunner

    from smfa_cli.main import cli

    out = tmp_path / "cli"
    r = CliRunner().invoke(cli, [str(a) for a in ["eval", "--model", models[1], "--data", hold_bench, "--split",
                                                  "forget05", "--out", out, "--limit", 1, "--max-new-tokens", 2,
                                                  "--privacy", "--json"]])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["run"]["privacy"] is True and s["privacy"]["mia_auc_minkpp"] is not None


def test_privacy_without_holdout_reports_mia_as_missing(small_bench, tiny_checkpoint, tmp_path):
    from smfa_eval.evaluate import run_eval
    from smfa_eval.judges import get_judge

    s = run_eval(small_bench, "forget05", tmp_path / "e", judge=get_judge("heuristic"), judge_name="heuristic",
                 model=str(tiny_checkpoint("llama")), max_new_tokens=2, limit=1, tasks=("text_memory",),
                 progress=False, privacy=True)
    p = s["privacy"]
    assert p["mia_auc_loss"] is None and "--holdout" in p["mia_note"] and p["utility"] is not None
    assert (tmp_path / "e" / "mia.jsonl").read_text() == ""


def test_bench_build_cli_holdout(tmp_path):
    from click.testing import CliRunner

    from smfa_cli.main import cli

    r = CliRunner().invoke(cli, ["bench", "build", "--profiles", "4", "--holdout", "2", "--general-images", "0",
                                 "--image-size", "64", "--out", str(tmp_path / "b")])
    assert r.exit_code == 0 and "4 profiles, 2 holdout, schema 1.2" in r.output, r.output
    assert Bench(tmp_path / "b").manifest.holdout == ["h00000", "h00001"]
    for cmd in (["attack", "--help"], ["attack", "relearn", "--help"], ["attack", "quantize", "--help"]):
        r = CliRunner().invoke(cli, cmd)
        assert r.exit_code == 0 and "--model" in r.output or "relearn" in r.output, r.output
