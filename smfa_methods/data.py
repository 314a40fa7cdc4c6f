"""Examples from JSONL files and the datasets the training loop consumes.

Schema, one JSON object per line: {"question": str, "answer": str, "image": optional path};
any other key is kept in `Example.extra` and otherwise ignored. Image paths are relative to
the benchmark directory when the file lies inside one (the nearest parent directory holding a
`manifest.json`, as `smfa bench build` writes them, e.g. for `unlearn/forget10_forget.jsonl`),
else to the JSONL file's own directory; `load_jsonl(..., image_root=)` overrides both.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch.utils.data import Dataset

from .errors import DataError


@dataclass(frozen=True)
class Example:
    question: str
    answer: str
    image: Path | None = None
    extra: dict = field(default_factory=dict, compare=False)


def parse_example(obj: object, where: str, base_dir: Path) -> Example:
    """One JSON object → Example; `where` ("file:line") names the culprit in errors."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in ("question", "answer"):
        if key not in obj:
            raise DataError(f"{where}: missing required key {key!r}")
        if not isinstance(obj[key], str):
            raise DataError(f"{where}: {key!r} must be a string, got {type(obj[key]).__name__}")
    image = obj.get("image")
    if image is not None:
        if not isinstance(image, str) or not image:
            raise DataError(f"{where}: 'image' must be a non-empty string path")
        image = (base_dir / image).resolve()
        if not image.is_file():
            raise DataError(f"{where}: image not found: {image}")
    extra = {k: v for k, v in obj.items() if k not in ("question", "answer", "image")}
    return Example(obj["question"], obj["answer"], image, extra)


def image_root_of(path: Path) -> Path:
    """Where a JSONL file's relative image paths start: the nearest benchmark directory above
    it (a parent holding manifest.json), else the file's own directory."""
    for d in path.resolve().parents:
        if (d / "manifest.json").is_file():
            return d
    return path.parent


def jsonl_records(path: Path, bad_line: Callable[[str, json.JSONDecodeError], Exception]
                  ) -> Iterator[tuple[str, object]]:
    """(`file:line`, parsed object) for each non-blank line of a JSONL file; a line that is not
    JSON raises `bad_line(where, error)` (each caller words its own error). The one JSONL loop
    of the training data and the benchmark's files."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise bad_line(where, exc) from None
            yield where, obj


def load_jsonl(path: str | Path, image_root: str | Path | None = None) -> list[Example]:
    """Read a JSONL file of examples; schema errors name the file and line. Relative image
    paths start at `image_root` (default: `image_root_of(path)`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    root = Path(image_root) if image_root is not None else image_root_of(path)
    out = [parse_example(obj, where, root) for where, obj in
           jsonl_records(path, lambda where, exc: DataError(f"{where}: invalid JSON ({exc.msg})"))]
    if not out:
        raise DataError(f"{path}: no examples")
    return out


def write_jsonl(path: str | Path, rows: Sequence[dict]) -> Path:
    """Write `rows` to `path` as JSON lines; returns the path."""
    path = Path(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def relabel(examples: Sequence[Example], answer_for: Callable[[int, Example], str]) -> list[Example]:
    """Same questions/images, new answers (e.g. refusals for D_f^idk)."""
    return [replace(ex, answer=answer_for(i, ex)) for i, ex in enumerate(examples)]


class ExampleDataset(Dataset):
    """Plain supervised examples: item = {"example": Example}."""

    def __init__(self, examples: Sequence[Example]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return {"example": self.examples[i]}


class PairedDataset(Dataset):
    """Forget examples each drawn with a retain example (open-unlearning's pairing, anchored
    on the forget set): one epoch = one pass over D_f. The retain partner of each forget
    index is fixed at construction from `seed`, so a resumed run sees the same pairs."""

    def __init__(self, forget: Sequence[Example], retain: Sequence[Example], seed: int = 0):
        if not forget or not retain:
            raise DataError("paired dataset needs a non-empty forget and retain set")
        self.forget, self.retain = list(forget), list(retain)
        rng = random.Random(seed)
        self.partner = [rng.randrange(len(self.retain)) for _ in self.forget]

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, i: int) -> dict:
        return {"forget": self.forget[i], "retain": self.retain[self.partner[i]]}
