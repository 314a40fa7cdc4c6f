"""The source distribution can build the extension: it holds every file of csrc/ that git
tracks (the .cpp files include headers and .inc bodies setuptools does not list by itself)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _git_files() -> list[str]:
    """The files a clean checkout would hold (tracked, plus untracked ones git does not ignore)."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [p for p in out.splitlines() if (ROOT / p).is_file()]


def test_sdist_holds_every_kernel_source_and_header(tmp_path):
    files = _git_files()
    tracked = [p for p in files if p.startswith("csrc/")]
    assert any(p.endswith(".inc") for p in tracked) and any(p.endswith(".h") for p in tracked)
    # from a copy of the checkout: the tree's own smfa.egg-info (the editable install's) keeps
    # the file list of earlier builds and would hide a missing MANIFEST.in line
    src = tmp_path / "src"
    for p in files:
        (src / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / p, src / p)
    env = {**os.environ, "SMFA_NO_EXT": "1"}  # the sdist only, no compile (setup.py's knob)
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")], cwd=src, env=env,
                   check=True, capture_output=True)
    (archive,) = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(archive) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    missing = sorted(set(tracked) - names)
    assert not missing, f"the sdist lacks {missing} (MANIFEST.in)"
    assert "smfa_eval/reproduce/presets/cpu.toml" in names
