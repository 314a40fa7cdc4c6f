"""Benchmark data: determinism, pixel-recoverable answers, splits, templates, the loader."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from smfa_eval import images as I
from smfa_eval.build import build
from smfa_eval.schema import PROFILE_ATTRIBUTES, Bench, BenchDataError


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def test_same_seed_identical_tree_other_seed_differs(tmp_path, bench_dir):
    a = build(tmp_path / "a", profiles=20, seed=3, general_images=6)
    assert a.seed == 3
    assert tree_hash(tmp_path / "a") == tree_hash(bench_dir)
    build(tmp_path / "c", profiles=20, seed=4, general_images=6)
    assert tree_hash(tmp_path / "c") != tree_hash(bench_dir)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary tree left behind


def test_refuses_non_empty_out(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("keep")
    with pytest.raises(FileExistsError):
        build(tmp_path / "x", profiles=4, seed=0, general_images=0)
    assert (tmp_path / "x" / "f").read_text() == "keep"


def test_profiles_complete_and_unique(bench_dir):
    profiles = Bench(bench_dir).profiles()
    assert len(profiles) == 20
    for p in profiles:
        assert all(getattr(p, a) for a in PROFILE_ATTRIBUTES)
    assert len({p.name for p in profiles}) == 20
    faces = {json.dumps(p.portrait_attrs, sort_keys=True) for p in profiles}
    assert len(faces) == 20  # identity is tied to the portrait
    portraits = {(bench_dir / p.portrait).read_bytes() for p in profiles}
    assert len(portraits) == 20


# ---- every image-understanding answer is readable from the pixels ----

def px(img: Image.Image, frac: tuple[float, float]) -> tuple[int, int, int]:
    return img.getpixel((int(frac[0] * img.width), int(frac[1] * img.height)))


def read_portrait(img: Image.Image) -> dict:
    P = I.PROBES
    inv = {v: k for k, v in I.BACKGROUNDS.items()}
    hat_px = px(img, P["hat"])
    return {
        "background": inv[px(img, P["background"])],
        "shirt": {v: k for k, v in I.SHIRTS.items()}[px(img, P["shirt"])],
        "hair": {v: k for k, v in I.HAIR.items()}[px(img, P["hair"])],
        "glasses": px(img, P["glasses"]) == I.GLASSES,
        "earrings": px(img, P["earring"]) == I.EARRING,
        "hat": None if hat_px in inv else {v: k for k, v in I.HATS.items()}[hat_px],
        "smiling": px(img, P["mouth_line"]) != I.MOUTH,
    }


def read_fundus(img: Image.Image) -> dict:
    P = I.PROBES
    eye = "left" if px(img, P["disc_left"]) == I.DISC else "right"
    assert px(img, P["disc_right" if eye == "left" else "disc_left"]) != I.DISC
    lesion = {v: k for k, v in I.LESION_COLOURS.items()}
    counts: dict[tuple[str, str], int] = {}
    r = P["lesion_radius"]
    for loc, (cx, cy) in P["lesion_centres"].items():
        for dx in range(-12, 13):
            for dy in range(-12, 13):
                c = px(img, (cx + dx * r / 12, cy + dy * r / 12))
                if c in lesion:
                    counts[(loc, lesion[c])] = counts.get((loc, lesion[c]), 0) + 1
    (loc, colour), _ = max(counts.items(), key=lambda kv: kv[1])
    cx, cy = P["lesion_centres"][loc]
    centre = px(img, (cx, cy)) in lesion
    below = px(img, (cx, cy + 0.025)) in lesion
    s = img.width
    rad = (int(r * s) - max(2, s // 40) / 2) / s
    import math

    ring = sum(px(img, (cx + rad * math.cos(a * math.pi / 8), cy + rad * math.sin(a * math.pi / 8))) in lesion
               for a in range(16))
    if centre:
        pattern = "a large patch" if below else "streaks"
    else:
        pattern = "a ring" if ring >= 14 else "scattered spots"
    return {"eye": eye, "location": loc, "colour": colour, "pattern": pattern}


def test_understanding_answers_recoverable_from_pixels(bench_dir):
    bench = Bench(bench_dir)
    unseen = bench.qa("general_eval") + bench.qa("general_eval_template")
    assert unseen and {i.task for i in unseen} == {"general_understanding"}
    items = [i for i in bench.qa("eval") + bench.qa("general") + unseen
             if i.task in ("image_understanding", "general_understanding")]
    assert len(items) > 20
    cache: dict[str, dict] = {}
    for it in items:
        if it.image not in cache:
            img = Image.open(bench_dir / it.image).convert("RGB")
            cache[it.image] = read_portrait(img) if it.image_type == "portrait" else read_fundus(img)
        seen = cache[it.image]
        a = it.answer.lower()
        if it.attribute in ("glasses", "earrings", "smiling"):
            assert a.startswith("yes" if seen[it.attribute] else "no"), (it, seen)
        elif it.attribute == "hat":
            assert a.startswith("yes" if seen["hat"] else "no"), (it, seen)
            if seen["hat"]:
                assert seen["hat"] in a
        elif it.attribute in ("hair", "shirt", "background"):
            assert f" {seen[it.attribute]} " in f" {a.rstrip('.')} ", (it, seen)
        elif it.attribute == "description":
            for key in ("eye", "location", "colour", "pattern"):
                assert seen[key] in a, (it, seen)
        else:
            key = {"lesion_colour": "colour", "lesion_location": "location", "lesion_pattern": "pattern",
                   "eye": "eye"}[it.attribute]
            assert seen[key] in a, (it, seen)


def test_every_pattern_and_location_is_read_back(tmp_path):
    import random

    rng = random.Random(0)
    for pattern in I.LESION_PATTERNS:
        for loc in I.LESION_LOCATIONS:
            for colour in I.LESION_COLOURS:
                a = I.ClinicalAttrs(eye=rng.choice(I.EYES), pattern=pattern, colour=colour, location=loc,
                                    vessel_seed=rng.randrange(1000))
                seen = read_fundus(I.draw_clinical(a))
                assert seen == {"eye": a.eye, "location": loc, "colour": colour, "pattern": pattern}


def test_clinical_description_matches_profile_image(bench_dir):
    profiles = Bench(bench_dir).profiles()
    assert profiles
    for p in profiles:
        seen = read_fundus(Image.open(bench_dir / p.clinical_image).convert("RGB"))
        assert set(seen) == {"eye", "location", "colour", "pattern"}, p.id
        for v in seen.values():
            assert v in p.clinical_description


def test_image_memory_shows_the_portrait_not_the_name(bench_dir):
    bench = Bench(bench_dir)
    names = {p.id: p.name for p in bench.profiles()}
    items = [it for it in bench.qa("eval") + bench.qa("finetune") if it.task == "image_memory"]
    assert len(items) >= len(names)  # every profile has image-memory items: the loop checks something
    for it in items:
        assert it.image and it.image.startswith("images/portraits/")
        assert names[it.profile_id] not in it.question


def test_eval_questions_never_equal_training_questions(bench_dir):
    bench = Bench(bench_dir)
    train = {i.question for i in bench.qa("finetune") + bench.qa("general")}
    ev = bench.qa("eval")
    assert {i.task for i in ev} == {"image_memory", "text_memory", "image_understanding"}
    assert not train & {i.question for i in ev}
    # several paraphrases per attribute are in use
    by_attr: dict[str, set[str]] = {}
    for i in ev:
        if i.task == "image_memory":
            by_attr.setdefault(i.attribute, set()).add(i.question)
    assert all(len(qs) >= 2 for qs in by_attr.values())


def test_split_sizes_and_disjointness(tmp_path):
    build(tmp_path / "b", profiles=100, seed=0, general_images=0)
    bench = Bench(tmp_path / "b", check_images=False)
    ids = {p.id for p in bench.profiles()}
    forgets = {}
    for name, n in (("forget05", 5), ("forget10", 10), ("forget15", 15)):
        s = bench.split(name)
        assert len(s.forget) == n and len(s.retain_fewshot) == n
        assert set(s.forget) <= ids and set(s.retain_fewshot) <= ids
        assert not set(s.forget) & set(s.retain_fewshot)
        forgets[name] = set(s.forget)
        fq = [i for i in bench.qa("finetune") if i.profile_id in s.forget]
        assert [i.to_dict() for i in fq] == [
            json.loads(line) for line in (tmp_path / "b" / s.forget_file).read_text().splitlines()]
        rq = (tmp_path / "b" / s.retain_file).read_text().splitlines()
        assert len(rq) == len(fq)
    assert forgets["forget05"] < forgets["forget10"] < forgets["forget15"]
    for name in forgets:  # few-shot retain never overlaps any forget set
        assert not set(bench.split(name).retain_fewshot) & forgets["forget15"]


# ---- loader errors name file and line ----

def copy_bench(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_loader_names_file_and_line(tmp_path, bench_dir):
    b = copy_bench(bench_dir, tmp_path / "b")
    lines = (b / "eval.jsonl").read_text().splitlines()
    bad = json.loads(lines[2])
    bad["task"] = "nonsense"
    lines[2] = json.dumps(bad)
    (b / "eval.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(BenchDataError, match=r"eval\.jsonl:3: task 'nonsense'"):
        Bench(b).qa("eval")
    lines[2] = "{not json"
    (b / "eval.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(BenchDataError, match=r"eval\.jsonl:3: invalid JSON"):
        Bench(b).qa("eval")


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("question"), r"missing field\(s\) \['question'\]"),
    (lambda d: d.update(extra=1), r"unknown field\(s\) \['extra'\]"),
    (lambda d: d.update(image="images/none.png"), r"does not exist"),
    (lambda d: d.update(image="../x.png"), r"must be relative"),
    (lambda d: d.update(keys="x"), r"keys must be a list"),
])
def test_loader_rejects_bad_records(tmp_path, bench_dir, mutate, message):
    b = copy_bench(bench_dir, tmp_path / "b")
    lines = (b / "finetune.jsonl").read_text().splitlines()
    d = json.loads(lines[15])
    mutate(d)
    lines[15] = json.dumps(d)
    (b / "finetune.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(BenchDataError, match=r"finetune\.jsonl:16: .*" + message):
        Bench(b).qa("finetune")


def test_manifest_version_checked(tmp_path, bench_dir):
    b = copy_bench(bench_dir, tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    m["schema_version"] = "2.0"
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BenchDataError, match=r"manifest\.json: schema_version '2\.0'"):
        Bench(b)
    with pytest.raises(BenchDataError, match="not found"):
        Bench(tmp_path)
