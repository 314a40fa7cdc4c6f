"""Resumable steps. Each step writes one directory under OUT; `OUT/manifest.json` records,
per step, a fingerprint of everything its output depends on (its settings and the
fingerprints of the steps it reads), its wall time, and when it finished. A rerun skips a step
whose record and output are both there with the same fingerprint; a step whose settings
changed runs again (and so does everything downstream, whose fingerprints change with it).
A step is built in a temporary sibling and renamed into place when complete, so an
interrupted run never leaves a directory that looks finished.

Several processes may share one OUT (say `smfa reproduce --split forget05` in a second shell
while the first runs the rest): a step is built under an exclusive lock (`OUT/.locks/NAME.lock`),
so a second process that needs it waits and then reuses it, and the ledger is re-read and
merged under its own lock on every check and write, so no process drops another's records.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def fingerprint(config: Any) -> str:
    """A stable short hash of a JSON-able value."""
    blob = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Steps:
    """The step ledger of one reproduction directory."""

    def __init__(self, out: Path, log: Callable[[str], None] = print) -> None:
        self.out = out
        self.log = log
        self.path = out / "manifest.json"
        self.records: dict[str, dict] = {}
        self._reload()

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[bool]:
        """Hold OUT/.locks/NAME.lock exclusively; yields whether another process held it first."""
        d = self.out / ".locks"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"{name.replace('/', '%')}.lock", "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                waited = False
            except BlockingIOError:
                waited = True
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield waited
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def busy(self, name: str) -> bool:
        """Whether another process is building `name` right now."""
        path = self.out / ".locks" / f"{name.replace('/', '%')}.lock"
        if not path.is_file():
            return False
        with open(path, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
        return False

    def _reload(self) -> None:
        """Merge the ledger on disk (other processes' steps) into ours."""
        if self.path.is_file():
            self.records.update(json.loads(self.path.read_text()))

    def _save(self, name: str) -> None:
        with self._lock("manifest.json"):
            disk = json.loads(self.path.read_text()) if self.path.is_file() else {}
            disk[name] = self.records[name]
            self.records = {**self.records, **disk}
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(disk, indent=2, sort_keys=True) + "\n")
            tmp.replace(self.path)

    def done(self, name: str, fp: str) -> bool:
        with self._lock("manifest.json"):
            self._reload()
        rec = self.records.get(name)
        return bool(rec and rec.get("fingerprint") == fp and (self.out / rec["dir"]).exists())

    def run(self, name: str, config: Any, build: Callable[[Path], Any], *, reads: tuple[str, ...] = ()) -> Path:
        """Run `build(tmp_dir)` unless `name` is done with this config; returns its directory.
        `reads`: the steps whose output this one uses (their fingerprints are part of its own)."""
        upstream = {r: self.records[r]["fingerprint"] for r in reads}
        fp = fingerprint({"config": config, "reads": upstream})
        final = self.out / name
        if self.done(name, fp):
            self.log(f"[skip] {name} (done, {self.records[name]['wall_s']:.0f} s)")
            return final
        with self._lock(name) as waited:
            if waited and self.done(name, fp):  # another process built it while we waited
                self.log(f"[skip] {name} (built by another process, {self.records[name]['wall_s']:.0f} s)")
                return final
            tmp = final.with_name(f".{final.name}.tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
            self.log(f"[run ] {name}")
            t0 = time.perf_counter()
            extra = build(tmp)
            wall = time.perf_counter() - t0
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            self.records[name] = {"fingerprint": fp, "dir": name, "wall_s": round(wall, 2),
                                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "config": config,
                                  **({"info": extra} if isinstance(extra, dict) else {})}
            self._save(name)
        self.log(f"[done] {name} in {wall:.0f} s")
        return final

    def wall_times(self) -> dict[str, float]:
        return {k: v["wall_s"] for k, v in sorted(self.records.items())}
