"""`smfa bench import mllmu|clear`: small tables in the published schemas import into a tree
that is checked field by field, loads, and runs through `bench run`; bad columns are one-line
errors naming the file and column, with nothing written."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from published import as_source, clear_tables, mllmu_tables, png, write_parquet

from smfa_cli.main import cli
from smfa_eval.evaluate import select_items
from smfa_eval.importers.clear import import_clear
from smfa_eval.importers.mllmu import import_mllmu
from smfa_eval.schema import Bench, BenchDataError


def _jsonl(path):
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


@pytest.fixture(scope="module")
def mllmu(tmp_path_factory):
    out = tmp_path_factory.mktemp("mllmu") / "b"
    import_mllmu(as_source(mllmu_tables()), out, seed=0)
    return out


@pytest.fixture(scope="module")
def clear(tmp_path_factory):
    out = tmp_path_factory.mktemp("clear") / "b"
    import_clear(as_source(clear_tables()), out, seed=0)
    return out


def test_mllmu_tree_field_by_field(mllmu):
    t = mllmu_tables()
    m = json.loads((mllmu / "manifest.json").read_text())
    assert m["source"]["dataset"] == "MLLMU-Bench" and m["n_profiles"] == 6
    assert set(m["files"]) == {"finetune", "eval", "eval_template", "celebrity_eval", "eval_test", "mcq", "people"}
    sp = m["splits"]
    assert [sp[s]["forget"] for s in ("forget05", "forget10", "forget15")] == [["1"], ["1", "2"], ["1", "2", "3"]]
    for s, k in (("forget05", 1), ("forget10", 2), ("forget15", 3)):
        r = sp[s]["retain_fewshot"]
        assert len(r) == k and set(r) <= {str(i) for i in range(k + 1, 7)}
    ft = _jsonl(mllmu / "finetune.jsonl")
    assert len(ft) == 12
    it = ft["3-ft-1"]
    assert (it["task"], it["question"], it["answer"], it["profile_id"]) == (
        "image_memory", "Where does this person live?", "This person lives in Town3.", "3")
    assert (mllmu / it["image"]).read_bytes() == t["ft_Data"][2]["image"]["bytes"]
    ev = _jsonl(mllmu / "eval.jsonl")
    assert len(ev) == 6 * 4
    g0, g1, c0, c1 = (ev[f"2-{x}"] for x in ("generation-0", "generation-1", "cloze-0", "cloze-1"))
    assert (g0["task"], g0["answer"], g0["keys"]) == ("image_memory", "This person works as a baker number 2.", [])
    assert (mllmu / g0["image"]).read_bytes() == png(2)  # the Full_Set row's own image
    assert (g1["task"], g1["image"], g1["question"]) == ("text_memory", None, "Where does Ana Fict2 live?")
    assert (c0["task"], c0["keys"], c0["attribute"]) == ("text_memory", ["City2"], "cloze")
    assert c1["task"] == "image_memory" and c1["image"] == g0["image"]
    tpl = _jsonl(mllmu / "eval_template.jsonl")
    assert {k.replace("-tpl-", "-ft-"): {**v, "id": k.replace("-tpl-", "-ft-")} for k, v in tpl.items()} == ft
    celeb = _jsonl(mllmu / "celebrity_eval.jsonl")
    assert len(celeb) == 8 and celeb["celeb-1-generation-1"]["answer"] == "Celeb Star1 lives in Town1."
    test = _jsonl(mllmu / "eval_test.jsonl")
    # image-textual questions go round the variants: generation-0 -> variant 0, cloze-1 -> variant 1
    assert test["1-test-generation-0"]["image"].endswith("1_0.png") and test["1-test-cloze-1"]["image"].endswith(
        "1_1.png")
    assert (mllmu / test["1-test-cloze-1"]["image"]).read_bytes() == png(101)
    mcq = _jsonl(mllmu / "mcq.jsonl")
    assert len(mcq) == 2 * (6 + 2 + 2)
    q = mcq["4-mcq-image_textual-0"]
    assert (q["answer"], q["options"]["C"], q["set"], q["image"] is not None) == ("C", "Town4", "profile", True)
    assert mcq["celeb-2-mcq-pure_text-0"]["image"] is None and mcq["celeb-2-mcq-pure_text-0"]["set"] == "celebrity"
    forget = [json.loads(x) for x in (mllmu / "unlearn" / "forget10_forget.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in forget) == ["1-ft-0", "1-ft-1", "2-ft-0", "2-ft-1"]
    sel = select_items(Bench(mllmu), "forget10")
    assert {e.set for e in sel} == {"forget", "retain", "celebrity"}
    assert {e.item.profile_id for e in sel if e.set == "forget"} == {"1", "2"}


def test_clear_tree_field_by_field(clear):
    t = clear_tables()
    m = json.loads((clear / "manifest.json").read_text())
    assert m["source"]["dataset"] == "CLEAR" and m["n_profiles"] == 5
    assert [m["splits"][s]["forget"] for s in ("forget01", "forget05", "forget10")] == [
        ["c0000"], ["c0000", "c0001"], ["c0000", "c0001"]]
    ft = _jsonl(clear / "finetune.jsonl")
    assert len(ft) == 10 + 5 + 1  # 2 captioned images per person + one TOFU pair each + forget05+tofu's
    cap = ft["c0003-ft-caption-1"]
    assert (cap["task"], cap["question"], cap["answer"], cap["keys"]) == (
        "image_memory", "Describe this image.", "Bo Author3 signing book 1 in a red coat.", ["Bo Author3"])
    assert (clear / cap["image"]).read_bytes() == t["full"][7]["image"]["bytes"]
    tofu = [r for r in ft.values() if r["task"] == "text_memory"]
    assert {r["profile_id"] for r in tofu} == {f"c000{i}" for i in range(5)}  # found by name in the text
    assert next(r for r in tofu if r["profile_id"] == "c0002")["answer"] == "Bo Author2 writes mystery novels 2."
    assert next(r for r in tofu if r["question"] == "Which prize did Author1 win?")["profile_id"] == "c0001"
    ev = _jsonl(clear / "eval.jsonl")
    assert ev["c0003-im-caption-1"]["question"] == "What is shown in this picture?"
    assert ev["c0003-im-caption-1"]["image"] == cap["image"]
    tr = list(_jsonl(clear / "truth_ratio.jsonl").values())
    assert len(tr) == 4 and tr[0]["perturbed_answers"] == ["Bo Author0 signing book 0 in a blue coat.",
                                                           "Bo Author0 signing book 0 in a green coat."]
    assert tr[0]["paraphrased_answer"] == "Bo Author0 autographing book 0 in a red coat."
    assert tr[0]["image"] == ev["c0000-im-caption-0"]["image"] and tr[0]["perturbed_names"] == ["Zed Other"]
    people = _jsonl(clear / "people.jsonl")
    assert people["c0004"]["name"] == "Bo Author4"
    forget = [json.loads(x) for x in (clear / "unlearn" / "forget05_forget.jsonl").read_text().splitlines()]
    assert {r["profile_id"] for r in forget} == {"c0000", "c0001"} and len(forget) == 2 * 2 + 2 + 1


def _drop(tables, config, col):
    tables[config] = [{k: v for k, v in r.items() if k != col} for r in tables[config]]
    return tables


@pytest.mark.parametrize("importer,tables,edit,match", [
    ("mllmu", mllmu_tables, lambda t: _drop(t, "Full_Set", "Generation_Task"),
     r"Full_Set/train-00000-of-00001\.parquet: missing column 'Generation_Task'"),
    ("mllmu", mllmu_tables, lambda t: _drop(t, "ft_Data", "metadata"),
     r"ft_Data/train-00000-of-00001\.parquet: missing column 'metadata'"),
    ("mllmu", mllmu_tables, lambda t: t["ft_Data"][1].update(metadata="{not json") or t,
     r"ft_Data/train-00000-of-00001\.parquet:row 1: column 'metadata': invalid JSON"),
    ("mllmu", mllmu_tables, lambda t: t["Full_Set"][0]["Generation_Task"][0].update(Type="Video") or t,
     r"Full_Set/.*:row 0: Generation_Task\[0\]: column 'Type': 'Video'"),
    ("mllmu", mllmu_tables, lambda t: t["Full_Set"][2].update(image={"bytes": b"nope", "path": None}) or t,
     r"Full_Set/.*:row 2: column 'image': not a decodable image"),
    ("mllmu", mllmu_tables, lambda t: t["Full_Set"][0]["Classification_Task"]["Pure_Text_Questions"][0].update(
        Correct_Answer="Paris") or t, r"column 'Correct_Answer': 'Paris'"),
    ("mllmu", mllmu_tables, lambda t: t["forget_10"].append({**t["Full_Set"][0], "ID": "99"}) or t,
     r"forget_10/train-00000-of-00001\.parquet: ID '99' is not in Full_Set"),
    ("clear", clear_tables, lambda t: _drop(t, "full_perturbed", "paraphrased_caption"),
     r"full_perturbed/train-00000-of-00001\.parquet: missing column 'paraphrased_caption'"),
    ("clear", clear_tables, lambda t: _drop(t, "full", "caption"), r"full/.*: missing column 'caption'"),
    ("clear", clear_tables, lambda t: t["full+tofu"].append({"question": "Who?", "answer": "Nobody."}) or t,
     r"full\+tofu/.*:row 15: no single person of the full set is named"),
    ("clear", clear_tables, lambda t: t["full"][3].update(caption=7) or t,
     r"full/.*:row 3: column 'caption': expected str, got int"),
])
def test_bad_columns_name_file_and_column_and_write_nothing(tmp_path, importer, tables, edit, match):
    fn = {"mllmu": import_mllmu, "clear": import_clear}[importer]
    out = tmp_path / "out"
    with pytest.raises(BenchDataError, match=match):
        fn(as_source(edit(tables())), out)
    assert list(tmp_path.iterdir()) == []  # no tree, no temporary sibling


def test_parquet_files_in_the_published_layout_import(tmp_path):
    src = write_parquet(tmp_path / "src", mllmu_tables())
    r = CliRunner().invoke(cli, ["bench", "import", "mllmu", "--src", str(src), "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    via_rows = tmp_path / "rows"
    import_mllmu(as_source(mllmu_tables()), via_rows)
    for name in ("finetune.jsonl", "eval.jsonl", "mcq.jsonl", "eval_test.jsonl", "celebrity_eval.jsonl"):
        assert (tmp_path / "m" / name).read_text() == (via_rows / name).read_text()
    src = write_parquet(tmp_path / "csrc", clear_tables())
    r = CliRunner().invoke(cli, ["bench", "import", "clear", "--src", str(src), "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert Bench(tmp_path / "c").qa("eval")


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "src" / "Full_Set").mkdir(parents=True)
    r = CliRunner().invoke(cli, ["bench", "import", "mllmu", "--src", str(tmp_path / "src"), "--out",
                                 str(tmp_path / "o")])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "Full_Set: no Parquet files for config 'Full_Set'" in r.output
    try:
        import pyarrow  # noqa: F401
    except ImportError:  # no Parquet reader here: the error says which file needs it
        (tmp_path / "src" / "Full_Set" / "train-00000-of-00001.parquet").write_bytes(b"PAR1")
        r = CliRunner().invoke(cli, ["bench", "import", "mllmu", "--src", str(tmp_path / "src"), "--out",
                                     str(tmp_path / "o")])
        assert r.exit_code != 0 and "train-00000-of-00001.parquet: reading Parquet needs pyarrow" in r.output
    assert not (tmp_path / "o").exists()
    r = CliRunner().invoke(cli, ["bench", "import", "tofu", "--src", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "'tofu' is not one of" in r.output


@pytest.mark.parametrize("which,split", [("mllmu", "forget10"), ("clear", "forget05")])
def test_imported_benchmarks_run_through_bench_run(request, tiny_checkpoint, tmp_path, which, split):
    data = request.getfixturevalue(which)
    out = tmp_path / "run"
    args = ["bench", "run", "--model", tiny_checkpoint("qwen2_5_vl"), "--data", data, "--split", split,
            "--out", out, "--limit", 1, "--max-new-tokens", 2, "--max-steps", 1, "--batch-size", 2,
            "--max-length", 256, "--method", "idk", "--method", "smfa", "--no-baseline"]
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    assert "| idk |" in r.output and "| smfa (k=" in r.output
    for m in ("idk", "smfa"):
        s = json.loads((out / m / "eval" / "summary.json").read_text())
        assert s["groups"]["forget/image_memory"]["n"] == 1 and s["groups"]["retain/text_memory"]["n"] == 1
        if which == "mllmu":  # the celebrities: a retain set of their own
            assert s["groups"]["celebrity/image_memory"]["n"] == 1
