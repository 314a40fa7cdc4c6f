"""What both importers share: reading a published dataset's tables, checking their columns and
values (every error names the file, the row and the column), writing images, and publishing
the smfa benchmark tree atomically (nothing is left under --out unless it is complete and
loads with `Bench`).

A published dataset is a directory with one folder per config holding
`train-0000N-of-0000M.parquet` files (the Hugging Face layout). `ParquetSource` reads them
with pyarrow; `MemorySource` holds the same rows already decoded (what pyarrow's
`to_pylist()` returns: structs as dicts, lists as lists, binary as bytes), for callers that
decoded the files another way.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from ..schema import SCHEMA_VERSION, Bench, BenchDataError, Manifest, QAItem, Split, write_jsonl


@dataclass
class Table:
    """One config's rows, each with the place it came from (`file:row N`)."""

    config: str
    rows: list[tuple[str, dict]]


class Source(Protocol):
    def has(self, config: str) -> bool: ...

    def table(self, config: str, columns: Iterable[str]) -> Table: ...


def _missing(where: str, config: str, col: str) -> BenchDataError:
    return BenchDataError(f"{where}: missing column {col!r} (config {config})")


class ParquetSource:
    """`root/<config>/*.parquet`, read with pyarrow."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise BenchDataError(f"{self.root}: --src is not a directory")

    def files(self, config: str) -> list[Path]:
        return sorted((self.root / config).glob("*.parquet"))

    def has(self, config: str) -> bool:
        return bool(self.files(config))

    def table(self, config: str, columns: Iterable[str]) -> Table:
        files = self.files(config)
        if not files:
            raise BenchDataError(f"{self.root / config}: no Parquet files for config {config!r}")
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise BenchDataError(f"{files[0]}: reading Parquet needs pyarrow (pip install pyarrow)") from None
        rows: list[tuple[str, dict]] = []
        for f in files:
            try:
                pf = pq.ParquetFile(f)
            except Exception as exc:  # pyarrow raises several types for a damaged file
                raise BenchDataError(f"{f}: not a readable Parquet file ({exc})") from None
            names = set(pf.schema_arrow.names)
            for col in columns:
                if col not in names:
                    raise _missing(str(f), config, col)
            rows += [(f"{f}:row {i}", r) for i, r in enumerate(pf.read().to_pylist())]
        return Table(config, rows)


class MemorySource:
    """{config: {file name: [row dicts]}}; a column is missing when a row lacks the key."""

    def __init__(self, tables: Mapping[str, Mapping[str, list[dict]]]) -> None:
        self.tables = tables

    def has(self, config: str) -> bool:
        return config in self.tables

    def table(self, config: str, columns: Iterable[str]) -> Table:
        if config not in self.tables:
            raise BenchDataError(f"{config}: no such config")
        rows: list[tuple[str, dict]] = []
        cols = list(columns)
        for fname, frows in self.tables[config].items():
            for i, r in enumerate(frows):
                for col in cols:
                    if col not in r:
                        raise _missing(fname, config, col)
                rows.append((f"{fname}:row {i}", r))
        return Table(config, rows)


def field(row: dict, where: str, col: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    """row[col], checked to be of `kind` (None allowed when `optional`)."""
    v = row.get(col)
    if v is None and optional:
        return None
    if not isinstance(v, kind):
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise BenchDataError(f"{where}: column {col!r}: expected {want}, got {type(v).__name__}")
    return v


def text(row: dict, where: str, col: str) -> str:
    """Column `col` of `row` as a non-empty string (BenchDataError naming `where` otherwise)."""
    v = field(row, where, col, str)
    if not v.strip():
        raise BenchDataError(f"{where}: column {col!r} is empty")
    return v


def image_bytes(v: Any, where: str, col: str) -> tuple[bytes, str]:
    """The bytes of an Image feature value ({"bytes", "path"}) and the file extension of their
    format; anything that does not decode as an image is an error."""
    if not isinstance(v, dict) or not isinstance(v.get("bytes"), (bytes, bytearray)):
        raise BenchDataError(f"{where}: column {col!r}: expected an image struct with 'bytes'")
    data = bytes(v["bytes"])
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
            fmt = img.format
    except Exception as exc:  # PIL raises many types for bad data
        raise BenchDataError(f"{where}: column {col!r}: not a decodable image ({exc})") from None
    return data, {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}.get(fmt or "", ".img")


def save_image(root: Path, rel_stem: str, v: Any, where: str, col: str) -> str:
    """Write an image value under root; returns its relative path."""
    data, ext = image_bytes(v, where, col)
    if ext == ".img":  # a format the model loaders may not know: store it as PNG
        with Image.open(io.BytesIO(data)) as img:
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="PNG")
            data, ext = buf.getvalue(), ".png"
    rel = rel_stem + ext
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)
    return rel


def safe_id(raw: object) -> str:
    """An id usable in file names (the published ids are numbers or names)."""
    s = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(raw).strip())
    return s or "_"


def fewshot(candidates: list[str], n: int, seed: int, name: str) -> list[str]:
    """A seeded few-shot retain set of n profiles (as smfa's own splits: as many as forgotten)."""
    pool = sorted(candidates)
    random.Random(f"smfa-import:{seed}:{name}").shuffle(pool)
    return sorted(pool[:n])


def publish(out: str | Path, overwrite: bool, fill: Callable[[Path], tuple[dict[str, list], dict[str, Split], dict]],
            ) -> Manifest:
    """Build the tree in a temporary sibling with `fill(tmp) -> (files, splits, source info)`
    (files: manifest key -> records; QAItems or dicts), check that it loads, then publish."""
    from smfa_core.atomic import AtomicOutput
    from smfa_core.errors import SmfaError

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise BenchDataError(f"{out} exists and is not empty (use --overwrite)")
    try:
        with AtomicOutput(out, overwrite=True) as tmp_s:
            tmp = Path(tmp_s)
            files, splits, info = fill(tmp)
            names = {key: f"{key}.jsonl" for key in files}
            for key, recs in files.items():
                write_jsonl(tmp / names[key], [r.to_dict() if isinstance(r, QAItem) else r for r in recs])
            by_pid: dict[str | None, list[dict]] = {}
            for it in files["finetune"]:
                by_pid.setdefault(it.profile_id, []).append(it.to_dict())
            for s in splits.values():
                assert s.forget_file and s.retain_file
                write_jsonl(tmp / s.forget_file, [r for p in s.forget for r in by_pid.get(p, [])])
                write_jsonl(tmp / s.retain_file, [r for p in s.retain_fewshot for r in by_pid.get(p, [])])
            manifest = Manifest(schema_version=SCHEMA_VERSION, files=names, splits=splits, seed=info.get("seed"),
                                n_profiles=info.get("n_profiles"))
            (tmp / "manifest.json").write_text(json.dumps({**manifest.to_dict(), "source": info}, indent=2,
                                                          sort_keys=True) + "\n")
            bench = Bench(tmp)  # every QA file must load (ids, tasks, images) before the tree is published
            for key, recs in files.items():
                if recs and isinstance(recs[0], QAItem):
                    bench.qa(key)
    except SmfaError as exc:
        raise BenchDataError(str(exc)) from None
    return manifest
