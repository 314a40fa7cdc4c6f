"""Training phrasings stay disjoint from the evaluation's wordings; reworded.jsonl and
pretrain.jsonl hold what they say; pre-training people never collide with a profile."""

from __future__ import annotations

import json
import random

import pytest

from smfa_eval import phrasings as P
from smfa_eval import templates as T
from smfa_eval.build import build
from smfa_eval.schema import SCHEMA_VERSION, Bench

SUBJECTS = ("Ada Lovelace", *T.IMAGE_SUBJECTS, *P.TRAIN_IMAGE_SUBJECTS)


def _norm(s: str) -> str:
    return " ".join(s.lower().replace("?", "").replace(".", "").split())


def _eval_questions() -> set[str]:
    qs = {_norm(q.format(s=s)) for _, pool in T.EVAL_MEMORY.values() for q in pool for s in SUBJECTS}
    return qs | {_norm(q) for _, pool in T.UNDERSTANDING.values() for q in pool}


def _eval_answers() -> set[str]:
    return {_norm(a.format(s=s, S=s, v="VALUE")) for a, _ in T.EVAL_MEMORY.values() for s in SUBJECTS}


def test_training_questions_never_equal_an_evaluation_question():
    evalq = _eval_questions()
    assert len(evalq) > 100
    clashes = [q for _, pool in P.TRAIN_MEMORY.values() for q in pool for s in SUBJECTS if _norm(q.format(s=s)) in evalq]
    clashes += [q for pool in P.TRAIN_UNDERSTANDING.values() for q in pool if _norm(q) in evalq]
    assert clashes == []


def test_training_answers_never_equal_an_evaluation_reference():
    evala = _eval_answers()
    clashes = [a for answers, _ in P.TRAIN_MEMORY.values() for a in answers for s in SUBJECTS
               if _norm(a.format(s=s, S=s, v="VALUE")) in evala]
    assert clashes == []


def test_rewordings_differ_from_the_fixed_templates_and_cover_every_attribute():
    fixed = {_norm(q.format(n=s)) for q, _ in (*T.FINETUNE_TEXT.values(), *T.FINETUNE_IMAGE.values()) for s in SUBJECTS}
    assert set(P.TRAIN_MEMORY) == set(T.EVAL_MEMORY)
    assert set(P.TRAIN_UNDERSTANDING) == set(T.UNDERSTANDING)
    assert all(_norm(q.format(s=s)) not in fixed for _, pool in P.TRAIN_MEMORY.values() for q in pool for s in SUBJECTS)
    got = P.reworded("birthplace", "Ada Lovelace", "Porto, Portugal", random.Random(0), 3)
    assert len({q for q, _ in got}) == 3 and all("Porto, Portugal" in a for _, a in got)
    assert all("Ada Lovelace" in q for q, _ in got)


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    out = tmp_path_factory.mktemp("grown") / "b"
    build(out, profiles=12, seed=5, general_images=4, image_size=64, rewordings=2, pretrain_people=6)
    return Bench(out)


def test_reworded_file_holds_n_rewordings_per_fact(grown):
    rows = grown.qa("reworded")
    about = [r for r in rows if r.profile_id]
    # 13 image-memory attributes + 12 text-memory attributes (no name from a name), 2 each, per profile
    assert len(about) == 12 * (13 + 12) * 2
    general = [r for r in rows if not r.profile_id]
    assert len(general) == len(grown.qa("general")) * 2
    evalq = {_norm(it.question) for it in grown.qa("eval")}
    assert not [r.question for r in rows if _norm(r.question) in evalq]
    values = {p.id: p for p in grown.profiles()}
    assert all(r.keys[0] in r.answer for r in about)
    assert all(values[r.profile_id].name in r.question for r in about if r.task == "text_memory")


def test_pretrain_people_are_in_no_split_and_share_no_name_or_face(grown):
    rows = grown.qa("pretrain")
    people = {r.profile_id for r in rows}
    assert len(people) == 6 and all(p.startswith("q") for p in people)
    profiles = grown.profiles()
    in_splits = {pid for s in grown.manifest.splits.values() for pid in (*s.forget, *s.retain_fewshot)}
    assert not people & in_splits
    names = {p.name for p in profiles}
    pre_names = {r.keys[0] for r in rows if r.attribute == "name"}
    assert len(pre_names) == 6 and not pre_names & names
    faces = {json.dumps(p.portrait_attrs, sort_keys=True) for p in profiles}
    images = {r.image for r in rows if r.image_type == "portrait"}
    assert all((grown.root / im).is_file() for im in images)
    from smfa_eval.profiles import sample_profiles  # a pure function of its arguments: redraw both sets

    bench_draws = sample_profiles(12, 5)
    pre_draws = sample_profiles(6, 5, namespace="pretrain", id_prefix="q", taken=bench_draws)
    assert not {json.dumps(d.profile.portrait_attrs, sort_keys=True) for d in pre_draws} & faces
    # the fun fact's parts are asked alone for these people (and only for them)
    assert {"talent", "hobby", "food"} <= {r.attribute for r in rows}
    assert not {"talent", "hobby", "food"} & {it.attribute for it in grown.qa("finetune")}


def test_manifest_records_growth_and_template_view(grown):
    m = grown.manifest
    assert (m.schema_version, m.rewordings, m.pretrain_people) == (SCHEMA_VERSION, 2, 6)
    tpl = grown.qa("eval_template")
    fine = {(it.profile_id, it.task, it.attribute): it for it in grown.qa("finetune")}
    memory = [it for it in tpl if it.task != "image_understanding"]
    assert len(memory) == len(fine)
    assert all(fine[(it.profile_id, it.task, it.attribute)].question == it.question for it in memory)
    und = [it for it in tpl if it.task == "image_understanding"]
    assert {it.question for it in und} == {q for q, _ in T.UNDERSTANDING.values()}


def test_build_without_growth_writes_no_extra_files(tmp_path):
    build(tmp_path / "b", profiles=4, seed=0, general_images=2, image_size=64)
    files = Bench(tmp_path / "b").manifest.files
    assert "reworded" not in files and "pretrain" not in files
    assert not (tmp_path / "b" / "reworded.jsonl").exists()
    with pytest.raises(ValueError, match="rewordings"):
        build(tmp_path / "c", profiles=4, seed=0, general_images=2, image_size=64, rewordings=-1)
