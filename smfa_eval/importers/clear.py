"""`smfa bench import clear`: CLEAR (images of fictitious persons with captions, on top of
TOFU's authors) as published, into the smfa benchmark layout.

Configs read (one folder each under --src):

* `full` (or `default`, its name in the dataset card), `forget01/05/10`, `retain99/95/90`:
  `image`, `caption`, `name`; every person of the full set is a profile; splits forget01/05/10 forget the persons named in the forget config,
  with a seeded few-shot retain set of as many persons from the matching retain config;
* their `+tofu` variants: the image rows again plus TOFU's `question`, `answer` rows about
  the same persons (the person: the row's `name` where the config has that column, else the
  person named in the text, see `_person`): text-memory items;
* their `_perturbed` variants: `caption`, `name`, `perturbed_captions`,
  `paraphrased_caption`, `perturbed_names` (and `image` where present): the truth-ratio file
  `truth_ratio.jsonl` (question, image, the caption, its paraphrase, the perturbed captions
  as the false answers).

Fine-tuning: every captioned image ("Describe this image." -> the caption; image_memory,
key = the person's name) and every TOFU pair (text_memory). Evaluation (`eval`): the same
captions asked in another wording and the TOFU questions; `eval_template` = the fine-tuning
items themselves.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..schema import BenchDataError, QAItem, Split
from .common import ParquetSource, Source, fewshot, field, publish, save_image, text

SPLITS = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
IMAGE_COLUMNS = ("image", "caption", "name")
TOFU_COLUMNS = ("question", "answer")
PERTURBED_COLUMNS = ("caption", "name", "perturbed_captions", "paraphrased_caption", "perturbed_names")
TRAIN_Q = "Describe this image."
EVAL_Q = "What is shown in this picture?"


def _names(source: Source, config: str) -> tuple[list[str], str]:
    t = source.table(config, IMAGE_COLUMNS)
    return [text(r, w, "name") for w, r in t.rows], t.rows[0][0].rsplit(":row", 1)[0] if t.rows else config


def _person(row: dict, where: str, by_name: dict[str, str], candidates: set[str]) -> str:
    """The profile a TOFU row is about. The published +tofu configs have no `name` column
    (their image rows do not name the person either), so: the row's `name` where there is
    one, else the longest full name in its text, else the one candidate (the persons of the
    config's own image rows) sharing the most name words with it."""
    if row.get("name") is not None:
        name = text(row, where, "name")
        if name not in by_name:
            raise BenchDataError(f"{where}: column 'name': {name!r} is not a person of the full set")
        return by_name[name]
    blob = f"{row.get('question', '')} {row.get('answer', '')}"
    hits = sorted((n for n in by_name if n in blob), key=len, reverse=True)
    if hits:
        return by_name[hits[0]]
    words = set(re.findall(r"\w+", blob))
    score = {n: sum(w in words for w in re.findall(r"\w+", n) if len(w) >= 3) for n in candidates}
    best = max(score.values(), default=0)
    top = [n for n, v in score.items() if v == best]
    if best == 0 or len(top) > 1:
        raise BenchDataError(f"{where}: no single person of the full set is named in 'question' / 'answer'")
    return by_name[top[0]]


def _image_items(source: Source, full_cfg: str, tmp: Path) -> tuple[dict[str, str], list, list, dict]:
    """The full set's captioned images: (name -> profile id, fine-tuning items, evaluation
    items, (name, caption) -> saved image)."""
    full = source.table(full_cfg, IMAGE_COLUMNS)
    names = sorted({text(r, w, "name") for w, r in full.rows})
    if not names:
        raise BenchDataError("full: no rows")
    by_name = {n: f"c{i:04d}" for i, n in enumerate(names)}
    finetune: list[QAItem] = []
    evals: list[QAItem] = []
    image_of: dict[tuple[str, str], str] = {}
    count: dict[str, int] = {}
    for w, r in full.rows:
        name, caption = text(r, w, "name"), text(r, w, "caption")
        pid = by_name[name]
        j = count[pid] = count.get(pid, -1) + 1
        rel = save_image(tmp, f"images/persons/{pid}_{j}", r.get("image"), w, "image")
        image_of[(name, caption)] = rel
        for items, q, tag in ((finetune, TRAIN_Q, "ft"), (evals, EVAL_Q, "im")):
            items.append(QAItem(id=f"{pid}-{tag}-caption-{j}", task="image_memory", question=q, answer=caption,
                                attribute="caption", profile_id=pid, image=rel, image_type="portrait",
                                keys=[name]))
    return by_name, finetune, evals, image_of


def _tofu_items(source: Source, full_cfg: str, by_name: dict[str, str], finetune: list, evals: list) -> None:
    """Every +tofu config's question/answer rows (once each), as text-memory items."""
    seen_qa: set[tuple[str, str]] = set()
    for cfg in ("full", *SPLITS, *SPLITS.values()):
        if not source.has(f"{cfg}+tofu"):
            continue
        base = cfg if cfg != "full" else full_cfg
        candidates = set(_names(source, base)[0]) if source.has(base) else set(by_name)
        for w, r in source.table(f"{cfg}+tofu", TOFU_COLUMNS).rows:
            if r.get("question") is None:
                continue  # an image row of a combined table: already read from the image config
            q, a = text(r, w, "question"), text(r, w, "answer")
            if (q, a) in seen_qa:
                continue
            seen_qa.add((q, a))
            pid, i = _person(r, w, by_name, candidates), len(seen_qa) - 1
            for items, tag in ((finetune, "ft"), (evals, "tm")):
                items.append(QAItem(id=f"{pid}-{tag}-tofu-{i}", task="text_memory", question=q, answer=a,
                                    attribute="tofu", profile_id=pid))


def _splits(source: Source, by_name: dict[str, str], seed: int) -> dict[str, Split]:
    """forgetNN from the persons of each forgetNN / retainMM config pair present."""
    splits = {}
    for fcfg, rcfg in SPLITS.items():
        if not (source.has(fcfg) and source.has(rcfg)):
            continue
        (forget, ffile), (retain, rfile) = _names(source, fcfg), _names(source, rcfg)
        for ns, f in ((forget, ffile), (retain, rfile)):
            stray = sorted(set(ns) - set(by_name))
            if stray:
                raise BenchDataError(f"{f}: column 'name': {stray[0]!r} is not a person of the full set")
        both = sorted(set(forget) & set(retain))
        if both:
            raise BenchDataError(f"{rfile}: column 'name': {both[0]!r} is also in {fcfg}")
        f_ids = sorted({by_name[n] for n in forget})
        splits[fcfg] = Split(name=fcfg, forget=f_ids,
                             retain_fewshot=fewshot(sorted({by_name[n] for n in retain}), len(f_ids), seed, fcfg),
                             forget_file=f"unlearn/{fcfg}_forget.jsonl",
                             retain_file=f"unlearn/{fcfg}_retain.jsonl")
    if not splits:
        raise BenchDataError(f"{getattr(source, 'root', 'source')}: no forgetNN / retainMM config pair")
    return splits


def _truth_rows(source: Source, by_name: dict[str, str], image_of: dict, tmp: Path) -> list[dict]:
    """The _perturbed configs' rows (once each) as truth-ratio records."""
    truth: list[dict] = []
    seen_tr: set[tuple[str, str]] = set()
    for cfg in ("full", *SPLITS, *SPLITS.values()):
        if not source.has(f"{cfg}_perturbed"):
            continue
        for w, r in source.table(f"{cfg}_perturbed", PERTURBED_COLUMNS).rows:
            name, caption = text(r, w, "name"), text(r, w, "caption")
            if name not in by_name:
                raise BenchDataError(f"{w}: column 'name': {name!r} is not a person of the full set")
            if (name, caption) in seen_tr:
                continue
            seen_tr.add((name, caption))
            pid = by_name[name]
            rel = image_of.get((name, caption))
            if rel is None and r.get("image") is not None:
                rel = save_image(tmp, f"images/perturbed/{pid}_{len(truth)}", r["image"], w, "image")
            false = field(r, w, "perturbed_captions", list)
            if not false or not all(isinstance(x, str) and x.strip() for x in false):
                raise BenchDataError(f"{w}: column 'perturbed_captions': expected a non-empty list of strings")
            pnames = field(r, w, "perturbed_names", list)
            if not all(isinstance(x, str) for x in pnames):
                raise BenchDataError(f"{w}: column 'perturbed_names': expected a list of strings")
            truth.append({"id": f"{pid}-tr-{len(truth)}", "profile_id": pid, "task": "image_memory",
                          "image": rel, "question": EVAL_Q, "answer": caption,
                          "paraphrased_answer": text(r, w, "paraphrased_caption"), "perturbed_answers": false,
                          "perturbed_names": pnames})
    return truth


def import_clear(src: Source | str | Path, out: str | Path, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Import CLEAR from `src` (a directory of config folders, or a Source) into `out`."""
    source = ParquetSource(src) if isinstance(src, (str, Path)) else src

    def fill(tmp: Path):
        # the whole set is config "full" (the folder name) or "default" (its name in the dataset card)
        full_cfg = "full" if source.has("full") or not source.has("default") else "default"
        by_name, finetune, evals, image_of = _image_items(source, full_cfg, tmp)
        _tofu_items(source, full_cfg, by_name, finetune, evals)
        splits = _splits(source, by_name, seed)
        truth = _truth_rows(source, by_name, image_of, tmp)
        files: dict[str, list] = {
            "finetune": finetune, "eval": evals,
            "eval_template": [QAItem(**{**it.to_dict(), "id": it.id.replace("-ft-", "-tpl-")}) for it in finetune],
            "people": [{"id": pid, "name": n} for n, pid in by_name.items()]}
        if truth:
            files["truth_ratio"] = truth
        configs = ["full", *SPLITS, *SPLITS.values()]
        info = {"dataset": "CLEAR", "seed": seed, "n_profiles": len(by_name),
                "configs": sorted(c + v for c in configs for v in ("", "+tofu", "_perturbed") if source.has(c + v))}
        return files, splits, info

    publish(out, overwrite, fill)
    return Path(out)
