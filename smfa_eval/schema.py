"""The on-disk benchmark format (JSONL + image folders) and its validating loader.

A benchmark directory holds `manifest.json` (schema version, file names, splits) and the
JSONL files it names; image paths inside records are relative to the directory. Any error
names the file and line. docs/benchmark.md documents the format for users' own data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# 1.1: optional reworded/pretrain files; 1.2: optional general_eval(_template) files of task
# general_understanding on unseen images, and optional holdout profiles (older readers ignore both)
SCHEMA_VERSION = "1.2"
TASKS = ("image_understanding", "image_memory", "text_memory")
# Evaluation sets beyond forget/retain: set -> manifest-file prefix. With items file K, the
# manifest's "<prefix>K" file (when there is one) joins the run as that set: "unseen" =
# general_understanding on images in no training set (general_eval.py); "celebrity" = the
# real people of an imported MLLMU-Bench, a retain set of their own (importers/mllmu.py).
EXTRA_SETS = {"unseen": "general_", "celebrity": "celebrity_"}
# Tasks only evaluation files hold (kept out of TASKS, which lays out Table 1's columns)
EVAL_TASKS = (*TASKS, "general_understanding")
IMAGE_TYPES = ("portrait", "clinical")
PROFILE_ATTRIBUTES = (
    "name", "birthplace", "gender", "date_of_birth", "profession", "height", "university",
    "annual_salary", "residence", "fun_fact", "clinical_description",
)


class BenchDataError(ValueError):
    """Invalid benchmark data; the message starts with `file:line:` where there is one."""


@dataclass
class Profile:
    id: str
    name: str
    birthplace: str
    gender: str
    date_of_birth: str
    profession: str
    height: str
    university: str
    annual_salary: str
    residence: str
    fun_fact: str
    clinical_description: str
    portrait: str
    clinical_image: str
    portrait_attrs: dict = field(default_factory=dict)
    clinical_attrs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class QAItem:
    """One question/answer pair. `keys` are the answer's key values (fact scoring)."""

    id: str
    task: str
    question: str
    answer: str
    attribute: str
    profile_id: str | None = None
    image: str | None = None
    image_type: str | None = None
    keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Split:
    name: str
    forget: list[str]
    retain_fewshot: list[str]
    forget_file: str | None = None
    retain_file: str | None = None


@dataclass
class Manifest:
    schema_version: str
    files: dict[str, str]
    splits: dict[str, Split]
    seed: int | None = None
    n_profiles: int | None = None
    image_size: int | None = None
    rewordings: int = 0
    pretrain_people: int = 0
    unseen_images: int = 0
    holdout: list[str] = field(default_factory=list)  # holdout profile ids (holdout.py)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["splits"] = {k: {kk: vv for kk, vv in asdict(v).items() if kk != "name"} for k, v in self.splits.items()}
        return {"format": "smfa-bench", **d}


def _fail(where: str, msg: str) -> BenchDataError:
    return BenchDataError(f"{where}: {msg}")


def _check_fields(cls, obj: object, where: str, optional: set[str]) -> dict:
    if not isinstance(obj, dict):
        raise _fail(where, f"expected a JSON object, got {type(obj).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(obj) - names)
    if unknown:
        raise _fail(where, f"unknown field(s) {unknown}")
    missing = sorted(names - optional - set(obj))
    if missing:
        raise _fail(where, f"missing field(s) {missing}")
    return obj


def _check_image(root: Path, rel: object, where: str, fieldname: str) -> None:
    if not isinstance(rel, str) or not rel:
        raise _fail(where, f"{fieldname} must be a relative path string")
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise _fail(where, f"{fieldname} {rel!r} must be relative to the benchmark directory")
    if not (root / p).is_file():
        raise _fail(where, f"{fieldname} {rel!r} does not exist under {root}")


def iter_jsonl(path: Path) -> Iterator[tuple[str, object]]:
    """Yield (`file:line`, parsed object) for each non-blank line."""
    from smfa_methods.data import jsonl_records  # imported here: the schema stays light to import

    if not path.is_file():
        raise BenchDataError(f"{path}: file not found")
    yield from jsonl_records(path, lambda where, exc: _fail(where, f"invalid JSON ({exc.msg} at column {exc.colno})"))


def read_qa(path: Path, root: Path, check_images: bool = True) -> list[QAItem]:
    """Read and validate a QA JSONL (fields, task, unique ids, images present); BenchDataError otherwise."""
    items: list[QAItem] = []
    seen: set[str] = set()
    for where, obj in iter_jsonl(path):
        d = _check_fields(QAItem, obj, where, {"profile_id", "image", "image_type", "keys"})
        for key in ("id", "task", "question", "answer", "attribute"):
            if not isinstance(d[key], str) or (key != "answer" and not d[key]):
                raise _fail(where, f"{key} must be a non-empty string")
        if d["task"] not in EVAL_TASKS:
            raise _fail(where, f"task {d['task']!r} is not one of {list(EVAL_TASKS)}")
        if d["id"] in seen:
            raise _fail(where, f"duplicate id {d['id']!r}")
        seen.add(d["id"])
        if d.get("image") is not None and check_images:
            _check_image(root, d["image"], where, "image")
        if d["task"] != "text_memory" and d.get("image") is None:
            raise _fail(where, f"task {d['task']} needs an image")
        if d.get("image_type") not in (None, *IMAGE_TYPES):
            raise _fail(where, f"image_type {d['image_type']!r} is not one of {list(IMAGE_TYPES)}")
        keys = d.get("keys", [])
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise _fail(where, "keys must be a list of strings")
        items.append(QAItem(**d))
    return items


def read_profiles(path: Path, root: Path, check_images: bool = True) -> list[Profile]:
    """Read and validate a profiles JSONL (non-empty attributes, unique ids, images present)."""
    out: list[Profile] = []
    seen: set[str] = set()
    for where, obj in iter_jsonl(path):
        d = _check_fields(Profile, obj, where, {"portrait_attrs", "clinical_attrs"})
        for key in ("id", *PROFILE_ATTRIBUTES):
            if not isinstance(d[key], str) or not d[key]:
                raise _fail(where, f"{key} must be a non-empty string")
        if d["id"] in seen:
            raise _fail(where, f"duplicate id {d['id']!r}")
        seen.add(d["id"])
        if check_images:
            _check_image(root, d["portrait"], where, "portrait")
            _check_image(root, d["clinical_image"], where, "clinical_image")
        out.append(Profile(**d))
    return out


def read_manifest(root: Path) -> Manifest:
    """Read and validate root/manifest.json: schema version, files, splits and holdout."""
    path = root / "manifest.json"
    if not path.is_file():
        raise BenchDataError(f"{path}: not found (is {root} a benchmark directory?)")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BenchDataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(d, dict):
        raise BenchDataError(f"{path}: expected a JSON object")
    version = d.get("schema_version")
    if not isinstance(version, str) or version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise BenchDataError(f"{path}: schema_version {version!r} is not compatible with {SCHEMA_VERSION}")
    files = d.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise BenchDataError(f"{path}: files must map names to relative paths")
    splits: dict[str, Split] = {}
    for name, s in (d.get("splits") or {}).items():
        if not isinstance(s, dict) or not isinstance(s.get("forget"), list):
            raise BenchDataError(f"{path}: split {name!r} needs a 'forget' list of profile ids")
        splits[name] = Split(name=name, forget=[str(x) for x in s["forget"]],
                             retain_fewshot=[str(x) for x in s.get("retain_fewshot", [])],
                             forget_file=s.get("forget_file"), retain_file=s.get("retain_file"))
    return Manifest(schema_version=version, files=files, splits=splits, seed=d.get("seed"),
                    n_profiles=d.get("n_profiles"), image_size=d.get("image_size"),
                    rewordings=int(d.get("rewordings") or 0), pretrain_people=int(d.get("pretrain_people") or 0),
                    unseen_images=int(d.get("unseen_images") or 0),
                    holdout=_holdout_ids(path, d.get("holdout"), splits))


def _holdout_ids(path: Path, ids: object, splits: dict[str, Split]) -> list[str]:
    """The manifest's holdout ids: a list of strings, in no split (else they would not be
    non-members)."""
    if ids is None:
        return []
    if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
        raise BenchDataError(f"{path}: holdout must be a list of profile ids")
    for s in splits.values():
        both = sorted(set(ids) & (set(s.forget) | set(s.retain_fewshot)))
        if both:
            raise BenchDataError(f"{path}: holdout profile(s) {both} are also in split {s.name!r}")
    return list(ids)


class Bench:
    """A benchmark directory: the manifest now, the JSONL files when asked for."""

    def __init__(self, root: str | Path, check_images: bool = True) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise BenchDataError(f"{self.root}: not a directory")
        self.manifest = read_manifest(self.root)
        self.check_images = check_images

    def path(self, key: str) -> Path:
        rel = self.manifest.files.get(key)
        if rel is None:
            raise BenchDataError(f"{self.root / 'manifest.json'}: no '{key}' entry in files")
        return self.root / rel

    def qa(self, key: str) -> list[QAItem]:
        return read_qa(self.path(key), self.root, self.check_images)

    def profiles(self) -> list[Profile]:
        return read_profiles(self.path("profiles"), self.root, self.check_images)

    def split(self, name: str) -> Split:
        if name not in self.manifest.splits:
            raise BenchDataError(
                f"{self.root / 'manifest.json'}: no split {name!r} (have {sorted(self.manifest.splits)})")
        return self.manifest.splits[name]


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Write `records` as key-sorted JSON lines, creating the parent directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
