"""`make demo` runs smfa_cli.demo: it must pass end to end (build, train two LoRA adapters,
sculpt through the CLI, reload with from_pretrained, bit-check the merge)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end(tmp_path):
    p = subprocess.run([sys.executable, "-m", "smfa_cli.demo", str(tmp_path / "demo")], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "byte-identical to the base: OK" in p.stdout
    assert (tmp_path / "demo" / "sculpted" / "smfa_report.json").exists()
