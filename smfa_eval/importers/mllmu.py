"""`smfa bench import mllmu`: MLLMU-Bench (500 fictitious profiles, 153 real celebrities) as
published, into the smfa benchmark layout.

Configs read (one folder each under --src):

* `Full_Set`: one row per fictitious profile: `image{bytes,path}`, `ID`, `Directory`,
  `biography`, `question`, `answer`, `Classification_Task{Image_Textual_Questions,
  Pure_Text_Questions}` (MCQ: `Question`, `Options{A..D}`, `Correct_Answer`), `Mask_Task` and
  `Generation_Task` (lists of `Question`, `Ground_Truth`, `Type` = Image_Textual | Pure_Text);
* `forget_5/10/15`, `retain_95/90/85`: the same columns; only their IDs are used (splits
  forget05/10/15, each with a seeded few-shot retain set of the forget set's size drawn from
  the matching retain config);
* `ft_Data`: `image`, `ID`, `metadata` (a JSON string of [{Question, Answer}]): the fine-tuning
  set, image + question -> `image_memory`;
* optional `Retain_Set` (celebrities): its generation / cloze items become evaluation set
  `celebrity` (file `celebrity_eval`), a retain set of its own in every report;
* optional `Test_Set` (images as a list of variants): items file `eval_test`, each
  image-textual question asked about one of the profile's variant images in turn.

Generation and cloze (Mask_Task) items of Full_Set are the evaluation (`eval`; image-textual
-> image_memory with the profile's image, pure-text -> text_memory); `eval_template` is the
fine-tuning QA itself (the "seen phrasing" view). MCQ items go to `mcq.jsonl` (one record per
question: id, profile_id, set hint, image or null, question, options, answer letter).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..schema import BenchDataError, QAItem, Split
from .common import MemorySource, ParquetSource, Source, fewshot, field, publish, safe_id, save_image, text

ROW_COLUMNS = ("image", "ID", "Directory", "biography", "question", "answer", "Classification_Task", "Mask_Task",
               "Generation_Task")
TASK_COLUMNS = ("image", "ID", "Classification_Task", "Mask_Task", "Generation_Task")
FT_COLUMNS = ("image", "ID", "metadata")
SPLITS = {5: ("forget_5", "retain_95"), 10: ("forget_10", "retain_90"), 15: ("forget_15", "retain_85")}
TYPES = {"Image_Textual": "image_memory", "Pure_Text": "text_memory"}
LETTERS = ("A", "B", "C", "D")


def _pid(row: dict, where: str, prefix: str = "") -> str:
    return prefix + safe_id(field(row, where, "ID", (int, str)))


def _open_items(row: dict, where: str, pid: str, image: str | None, tag: str) -> list[QAItem]:
    """Generation_Task and Mask_Task (cloze) items of one row."""
    out = []
    for col, attr in (("Generation_Task", "generation"), ("Mask_Task", "cloze")):
        for i, q in enumerate(field(row, where, col, list)):
            w = f"{where}: {col}[{i}]"
            if not isinstance(q, dict):
                raise BenchDataError(f"{w}: expected a struct")
            kind = text(q, w, "Type")
            if kind not in TYPES:
                raise BenchDataError(f"{w}: column 'Type': {kind!r} is not one of {sorted(TYPES)}")
            gt = text(q, w, "Ground_Truth")
            img = image if TYPES[kind] == "image_memory" else None
            if TYPES[kind] == "image_memory" and img is None:
                raise BenchDataError(f"{w}: an Image_Textual item of a row without an image")
            out.append(QAItem(id=f"{pid}-{tag}{attr}-{i}", task=TYPES[kind], question=text(q, w, "Question"),
                              answer=gt, attribute=attr, profile_id=pid, image=img,
                              image_type="portrait" if img else None, keys=[gt] if attr == "cloze" else []))
    return out


def _mcq(row: dict, where: str, pid: str, image: str | None, set_hint: str, tag: str = "") -> list[dict]:
    ct = field(row, where, "Classification_Task", dict)
    out = []
    for col, kind in (("Image_Textual_Questions", "image_textual"), ("Pure_Text_Questions", "pure_text")):
        for i, q in enumerate(field(ct, f"{where}: Classification_Task", col, list)):
            w = f"{where}: Classification_Task.{col}[{i}]"
            if not isinstance(q, dict):
                raise BenchDataError(f"{w}: expected a struct")
            opts = field(q, w, "Options", dict)
            options = {k: text(opts, f"{w}.Options", k) for k in LETTERS}
            ans = text(q, w, "Correct_Answer").strip()
            letter = ans[:1] if ans[:1] in LETTERS and (len(ans) == 1 or not ans[1].isalpha()) else None
            letter = letter or next((k for k, v in options.items() if v.strip() == ans), None)
            if letter is None:
                raise BenchDataError(f"{w}: column 'Correct_Answer': {ans!r} is neither a letter A-D nor an option")
            out.append({"id": f"{pid}-{tag}mcq-{kind}-{i}", "profile_id": pid, "set": set_hint, "kind": kind,
                        "image": image if kind == "image_textual" else None, "question": text(q, w, "Question"),
                        "options": options, "answer": letter})
    return out


def _ft_items(row: dict, where: str, pid: str, image: str) -> list[QAItem]:
    raw = field(row, where, "metadata", str)
    try:
        pairs = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BenchDataError(f"{where}: column 'metadata': invalid JSON ({exc.msg})") from None
    if not isinstance(pairs, list):
        raise BenchDataError(f"{where}: column 'metadata': expected a JSON list of {{Question, Answer}}")
    out = []
    for i, qa in enumerate(pairs):
        w = f"{where}: metadata[{i}]"
        if not isinstance(qa, dict):
            raise BenchDataError(f"{w}: expected an object with Question and Answer")
        out.append(QAItem(id=f"{pid}-ft-{i}", task="image_memory", question=text(qa, w, "Question"),
                          answer=text(qa, w, "Answer"), attribute="ft", profile_id=pid, image=image,
                          image_type="portrait"))
    return out


def _ids(src: Source, config: str) -> tuple[list[str], str]:
    t = src.table(config, ROW_COLUMNS)
    return [_pid(r, w) for w, r in t.rows], t.rows[0][0].rsplit(":row", 1)[0] if t.rows else config


def _full_set(source: Source, tmp: Path) -> tuple[list[dict], list[QAItem], list[dict], dict[str, str]]:
    """Full_Set: (people, evaluation items, MCQ rows, profile id -> saved image)."""
    people: list[dict] = []
    evals: list[QAItem] = []
    mcq: list[dict] = []
    images: dict[str, str] = {}
    for w, r in source.table("Full_Set", ROW_COLUMNS).rows:
        pid = _pid(r, w)
        if pid in images:
            raise BenchDataError(f"{w}: duplicate ID {pid!r}")
        images[pid] = save_image(tmp, f"images/profiles/{pid}", r.get("image"), w, "image")
        people.append({"id": pid, "source": "Full_Set", "biography": field(r, w, "biography", str),
                       "directory": str(r.get("Directory") or "")})
        evals += _open_items(r, w, pid, images[pid], "")
        mcq += _mcq(r, w, pid, images[pid], "profile")
    if not images:
        raise BenchDataError("Full_Set: no rows")
    return people, evals, mcq, images


def _splits(source: Source, images: dict[str, str], seed: int) -> dict[str, Split]:
    """forgetNN from each forget_N / retain_M config pair present."""
    splits = {}
    for pct, (fcfg, rcfg) in SPLITS.items():
        if not (source.has(fcfg) and source.has(rcfg)):
            continue
        (forget, ffile), (retain, rfile) = _ids(source, fcfg), _ids(source, rcfg)
        for ids, f in ((forget, ffile), (retain, rfile)):
            stray = sorted(set(ids) - set(images))
            if stray:
                raise BenchDataError(f"{f}: ID {stray[0]!r} is not in Full_Set")
        both = sorted(set(forget) & set(retain))
        if both:
            raise BenchDataError(f"{rfile}: ID {both[0]!r} is also in {fcfg}")
        name = f"forget{pct:02d}"
        splits[name] = Split(name=name, forget=sorted(forget), retain_fewshot=fewshot(retain, len(forget), seed, name),
                             forget_file=f"unlearn/{name}_forget.jsonl", retain_file=f"unlearn/{name}_retain.jsonl")
    if not splits:
        raise BenchDataError(f"{getattr(source, 'root', 'source')}: no forget_N / retain_M config pair")
    return splits


def _celebrities(source: Source, tmp: Path, people: list[dict], mcq: list[dict]) -> list[QAItem]:
    """Retain_Set (real celebrities): their evaluation items; people and MCQ rows appended."""
    celeb: list[QAItem] = []
    for w, r in source.table("Retain_Set", TASK_COLUMNS).rows:
        pid = _pid(r, w, "celeb-")
        img = save_image(tmp, f"images/celebrities/{pid}", r.get("image"), w, "image")
        people.append({"id": pid, "source": "Retain_Set"})
        celeb += _open_items(r, w, pid, img, "")
        mcq += _mcq(r, w, pid, img, "celebrity")
    return celeb


def _test_set(source: Source, tmp: Path, images: dict[str, str], mcq: list[dict]) -> list[QAItem]:
    """Test_Set: the profiles' questions on other images of them (MCQ rows appended)."""
    test: list[QAItem] = []
    for w, r in source.table("Test_Set", TASK_COLUMNS).rows:
        pid = _pid(r, w)
        if pid not in images:
            raise BenchDataError(f"{w}: ID {pid!r} is not in Full_Set")
        variants = field(r, w, "image", list)
        if not variants:
            raise BenchDataError(f"{w}: column 'image': no image variants")
        rels = [save_image(tmp, f"images/test/{pid}_{j}", v, f"{w}: image[{j}]", "image")
                for j, v in enumerate(variants)]
        items = _open_items(r, w, pid, rels[0], "test-")
        k = 0
        for it in items:  # image-textual questions go round the variants
            if it.image is not None:
                it.image, k = rels[k % len(rels)], k + 1
        test += items
        mcq += _mcq(r, w, pid, rels[0], "test", "test-")
    return test


def import_mllmu(src: Source | str | Path, out: str | Path, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Import MLLMU-Bench from `src` (a directory of config folders, or a Source) into `out`."""
    source = ParquetSource(src) if isinstance(src, (str, Path)) else src

    def fill(tmp: Path):
        people, evals, mcq, images = _full_set(source, tmp)
        finetune = []
        for w, r in source.table("ft_Data", FT_COLUMNS).rows:
            pid = _pid(r, w)
            if pid not in images:
                raise BenchDataError(f"{w}: ID {pid!r} is not in Full_Set")
            finetune += _ft_items(r, w, pid, save_image(tmp, f"images/finetune/{pid}", r.get("image"), w, "image"))
        splits = _splits(source, images, seed)
        files: dict[str, list] = {"finetune": finetune, "eval": evals,
                                  "eval_template": [QAItem(**{**it.to_dict(), "id": it.id.replace("-ft-", "-tpl-")})
                                                    for it in finetune]}
        if source.has("Retain_Set"):
            files["celebrity_eval"] = _celebrities(source, tmp, people, mcq)
        if source.has("Test_Set"):
            files["eval_test"] = _test_set(source, tmp, images, mcq)
        files["mcq"], files["people"] = mcq, people
        info = {"dataset": "MLLMU-Bench", "seed": seed, "n_profiles": len(images),
                "configs": sorted(c for c in ("Full_Set", "ft_Data", "Retain_Set", "Test_Set",
                                              *[x for p in SPLITS.values() for x in p]) if source.has(c))}
        return files, splits, info

    publish(out, overwrite, fill)
    return Path(out)


__all__ = ["import_mllmu", "MemorySource", "ParquetSource"]
