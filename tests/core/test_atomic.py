"""smfa_core.atomic: outputs appear complete or not at all, even under kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from smfa_core import atomic
from smfa_core.atomic import AtomicOutput, cleanup_stale
from smfa_core.errors import SmfaError
from smfa_core.safetensors_io import Checkpoint

REPO = Path(__file__).resolve().parents[2]


def _siblings(parent: Path) -> list[str]:
    return sorted(e for e in os.listdir(parent) if ".smfa-" in e)


def _tree(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --------------------------------------------------------------------------------------------
# basic behaviour


def test_publish_directory(tmp_path):
    dest = tmp_path / "out"
    with AtomicOutput(dest) as tmp:
        assert os.path.isdir(tmp) and not dest.exists()
        assert os.path.dirname(tmp) == str(tmp_path)
        name = os.path.basename(tmp)
        assert name.startswith(".out.smfa-tmp-") and f"-{os.getpid()}-" in name
        (Path(tmp) / "a.txt").write_text("hello")
        (Path(tmp) / "sub").mkdir()
        (Path(tmp) / "sub" / "b.txt").write_text("x")
    assert _tree(dest) == {"a.txt": b"hello", "sub/b.txt": b"x"}
    assert _siblings(tmp_path) == []


def test_exists_without_overwrite(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep").write_text("old")
    with pytest.raises(SmfaError, match=rf"{dest} exists; pass --overwrite"):
        with AtomicOutput(dest):
            pass
    f = tmp_path / "f.json"
    f.write_text("{}")
    with pytest.raises(SmfaError, match="--overwrite"):
        with AtomicOutput(f, is_dir=False):
            pass
    assert _tree(dest) == {"keep": b"old"} and _siblings(tmp_path) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_overwrite_directory(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with AtomicOutput(dest, overwrite=True) as tmp:
        (Path(tmp) / "new.txt").write_text("new")
        assert _tree(dest) == {"old.txt": b"old"}  # untouched while writing
    assert _tree(dest) == {"new.txt": b"new"}
    assert _siblings(tmp_path) == []


def test_overwrite_type_change(tmp_path):
    dest = tmp_path / "out"
    dest.write_text("i was a file")
    with AtomicOutput(dest, overwrite=True) as tmp:
        (Path(tmp) / "x").write_text("dir now")
    assert _tree(dest) == {"x": b"dir now"}
    with AtomicOutput(dest, overwrite=True, is_dir=False) as tmp:
        Path(tmp).write_text("file again")
    assert dest.read_text() == "file again" and _siblings(tmp_path) == []


def test_file_output(tmp_path):
    dest = tmp_path / "sub" / "report.json"  # missing parents are created
    with AtomicOutput(dest, is_dir=False) as tmp:
        assert not os.path.exists(tmp)
        Path(tmp).write_text('{"a": 1}')
        assert not dest.exists()
    assert dest.read_text() == '{"a": 1}'
    with AtomicOutput(dest, is_dir=False, overwrite=True) as tmp:
        Path(tmp).write_text("2")
    assert dest.read_text() == "2" and _siblings(dest.parent) == []
    with pytest.raises(SmfaError, match="nothing was written"):
        with AtomicOutput(tmp_path / "never.json", is_dir=False):
            pass
    assert not (tmp_path / "never.json").exists()


def test_exception_removes_temp_and_keeps_old(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with AtomicOutput(dest, overwrite=True) as tmp:
            (Path(tmp) / "partial").write_text("half")
            raise RuntimeError("boom")
    assert _tree(dest) == {"old.txt": b"old"} and _siblings(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with AtomicOutput(tmp_path / "new") as tmp:
            raise KeyboardInterrupt
    assert not (tmp_path / "new").exists() and _siblings(tmp_path) == []


def test_dest_appears_meanwhile(tmp_path, monkeypatch):
    dest = tmp_path / "out"
    for no_renameat2 in (False, True):
        if no_renameat2:
            monkeypatch.setattr(atomic, "_get_renameat2", lambda: None)
        with pytest.raises(SmfaError, match="appeared|exists"):
            with AtomicOutput(dest) as tmp:
                (Path(tmp) / "new").write_text("new")
                dest.mkdir()
                (dest / "theirs").write_text("theirs")
        assert _tree(dest) == {"theirs": b"theirs"} and _siblings(tmp_path) == []
        (dest / "theirs").unlink()
        dest.rmdir()
    # without renameat2 the plain path still publishes
    with AtomicOutput(dest) as tmp:
        (Path(tmp) / "ok").write_text("ok")
    assert _tree(dest) == {"ok": b"ok"}


def test_bad_dest():
    with pytest.raises(SmfaError):
        AtomicOutput("/")


def test_cleanup_stale(tmp_path):
    dead = _dead_pid()
    live = os.getppid()
    (tmp_path / f".out.smfa-tmp-{dead}-abcd1234").mkdir()
    (tmp_path / f".out.smfa-tmp-{dead}-abcd1234" / "x").write_text("x")
    (tmp_path / f".r.json.smfa-tmp-{dead}-00ff").write_text("partial")
    (tmp_path / f".out.smfa-tmp-{live}-beef").mkdir()  # a running process: left alone
    (tmp_path / f".out.smfa-tmp-{os.getpid()}-beef").mkdir()  # ourselves: left alone
    # a previous output parked by a run that died mid-replace, with dest missing: put back
    (tmp_path / f".prev.smfa-old-{dead}-1234").mkdir()
    (tmp_path / f".prev.smfa-old-{dead}-1234" / "w").write_text("old complete")
    # parked, but dest exists again: removed
    (tmp_path / "cur").mkdir()
    (tmp_path / f".cur.smfa-old-{dead}-5678").mkdir()
    (tmp_path / "unrelated.txt").write_text("keep")
    (tmp_path / ".hidden").write_text("keep")
    cleanup_stale(tmp_path)
    assert _siblings(tmp_path) == sorted([f".out.smfa-tmp-{live}-beef", f".out.smfa-tmp-{os.getpid()}-beef"])
    assert _tree(tmp_path / "prev") == {"w": b"old complete"}
    assert (tmp_path / "unrelated.txt").exists() and (tmp_path / ".hidden").exists()
    cleanup_stale(tmp_path / "does-not-exist")  # no error


# --------------------------------------------------------------------------------------------
# kill -9 at various moments


_WRITER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from smfa_core import atomic
    from smfa_core.atomic import AtomicOutput
    from smfa_core.safetensors_io import SafetensorsWriter, write_index


    def say(msg):
        # report the event, then wait until the parent lets us go on (or kills us right here)
        print(msg, flush=True)
        sys.stdin.readline()


    def instrument(exchange):
        if not exchange:
            atomic._exchange = lambda a, b: False
        real = atomic._renameat2_call
        def renameat2_call(*a):
            say("PUB-BEGIN"); r = real(*a); say("PUB-DONE"); return r
        atomic._renameat2_call = renameat2_call
        real_rename = os.rename
        def rename(*a):
            say("PUB-BEGIN"); real_rename(*a); say("PUB-DONE")
        os.rename = rename


    def tensors(shard):
        g = torch.Generator().manual_seed(shard)
        return {f"s{shard}.t{i}": torch.randn(64, 32, generator=g).to(torch.bfloat16) for i in range(3)}


    def run(dest, overwrite):
        with AtomicOutput(dest, overwrite=overwrite) as tmp:
            say("ENTERED")
            wm = {}
            for shard in range(3):
                ts = tensors(shard)
                fn = f"model-{shard + 1:05d}-of-00003.safetensors"
                decl = [(k, v.dtype, tuple(v.shape)) for k, v in ts.items()]
                with SafetensorsWriter(os.path.join(tmp, fn), decl, metadata={"tag": "new"}) as w:
                    for k, v in ts.items():
                        flat = v.reshape(-1)
                        for j in range(0, flat.numel(), 256):
                            w.write(k, flat[j:j + 256])
                            say("CHUNK")
                        wm[k] = fn
            write_index(tmp, wm, 3 * 3 * 64 * 32 * 2)
            say("INDEXED")
        say("PUBLISHED")


    # torch is imported once; each case runs in a forked child that the parent kills with SIGKILL.
    for dest, overwrite, exchange in json.loads(sys.argv[1]):
        pid = os.fork()
        if pid == 0:
            print(f"PID {os.getpid()}", flush=True)
            instrument(exchange)
            run(dest, overwrite)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(f"END {status}", flush=True)
    """
)


def _expected() -> dict[str, torch.Tensor]:
    out = {}
    for shard in range(3):
        g = torch.Generator().manual_seed(shard)
        for i in range(3):
            out[f"s{shard}.t{i}"] = torch.randn(64, 32, generator=g).to(torch.bfloat16)
    return out


def _is_complete_new(dest: Path) -> bool:
    with Checkpoint(dest) as ck:  # strict: any partial shard or index raises SmfaError
        exp = _expected()
        assert ck.names() == list(exp)
        for k, v in exp.items():
            assert torch.equal(ck.read(k), v)
        assert all(ck.metadata(f)["tag"] == "new" for f in ck.files)
    return True


# (overwrite an old output?, use the atomic exchange?, event to kill at, its occurrence)
KILLS = [
    (False, True, "ENTERED", 1),
    (False, True, "CHUNK", 30),  # inside shard 2 (8 chunks per tensor, 3 tensors per shard)
    (False, True, "INDEXED", 1),
    (False, True, "PUB-BEGIN", 1),  # just before the rename into place
    (True, True, "CHUNK", 60),  # inside shard 3
    (True, True, "PUB-DONE", 1),  # exchanged: new in place, old not yet removed
    (True, False, "PUB-DONE", 1),  # old moved aside, new not yet in place: dest missing
    (True, False, "PUB-DONE", 2),  # new in place, old not yet removed
]


def test_kill9_never_leaves_partial_output(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    old_tree = {"model.safetensors": b"old complete content", "config.json": b"{}"}
    cases = []
    for i, (overwrite, exchange, _event, _nth) in enumerate(KILLS):
        parent = tmp_path / f"case{i}"
        parent.mkdir()
        dest = parent / "out"
        if overwrite:
            dest.mkdir()
            for k, v in old_tree.items():
                (dest / k).write_bytes(v)
        cases.append((str(dest), overwrite, exchange))
    proc = subprocess.Popen(
        [sys.executable, str(script), json.dumps(cases)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(REPO),
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + 120

    def line() -> str:
        out = proc.stdout.readline()
        assert out, f"writer exited early: {proc.stderr.read()}"
        assert time.monotonic() < deadline
        return out.strip()

    try:
        for (overwrite, _exchange, event, nth), (dest_s, _, _) in zip(KILLS, cases):
            dest = Path(dest_s)
            parent = dest.parent
            first = line()
            assert first.startswith("PID "), first
            child = int(first.split()[1])
            seen = 0
            while True:
                ev = line()
                assert ev != "PUBLISHED", f"{event} #{nth} never happened"
                if ev == event:
                    seen += 1
                    if seen == nth:
                        os.kill(child, signal.SIGKILL)
                        break
                proc.stdin.write("\n")
                proc.stdin.flush()
            end = line()
            assert end.startswith("END "), end
            assert os.WIFSIGNALED(int(end.split()[1])) and os.WTERMSIG(int(end.split()[1])) == signal.SIGKILL

            # Invariant: nothing at dest, or the old complete content, or the new complete content.
            if dest.exists():
                tree = _tree(dest)
                if tree != old_tree:
                    assert _is_complete_new(dest), (event, nth)
                state = "old" if tree == old_tree else "new"
            else:
                state = "missing"
            expect_state = {
                ("ENTERED", False): "missing",
                ("CHUNK", False): "missing",
                ("INDEXED", False): "missing",
                ("PUB-BEGIN", False): "missing",
                ("CHUNK", True): "old",
            }.get((event, overwrite))
            if expect_state is not None:
                assert state == expect_state, (event, nth, state)
            assert _siblings(parent), "the killed run should have left its temporary sibling behind"

            # A later cleanup removes the leftovers and puts back a parked old output.
            cleanup_stale(parent)
            assert _siblings(parent) == []
            if overwrite:
                tree = _tree(dest)
                assert tree == old_tree or _is_complete_new(dest)
                if state == "missing":
                    assert tree == old_tree  # restored
            elif dest.exists():
                assert _is_complete_new(dest)
        proc.wait(timeout=60)
        assert proc.returncode == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
