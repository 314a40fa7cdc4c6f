"""Out-of-core sculpt of a model-shaped set against the I/O floor, cold page cache.

    SMFA_BENCH_SHAPE=qwen2.5-1.5b make bench      # default; ~9.3 GB of inputs in bench-data/
    SMFA_BENCH_SHAPE=qwen2.5-7b   make bench      # ~46 GB of inputs: larger than RAM

The floor is measured in the same run: `cat` of the three input checkpoints (cold) plus a
durable write (fsync) of one output of the merged size. Peak RSS of the sculpt process
comes from wait4(). Dropping the page cache needs root (it is root here); without it the
figures are labelled warm.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = os.environ.get("SMFA_BENCH_SHAPE", "qwen2.5-1.5b")
DATA = os.path.join(ROOT, "bench-data", SHAPE)


def _drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def _run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    assert os.waitstatus_to_exitcode(status) == 0, err.decode()[-2000:]
    return wall, ru.ru_maxrss * 1024


@pytest.fixture(scope="module")
def shaped_set():
    if not os.path.exists(os.path.join(DATA, "anchor", "model.safetensors.index.json")):
        subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "shaped_set.py"), "--shape", SHAPE,
                        "--out", DATA], check=True)
    return DATA


def test_streaming_sculpt_vs_io_floor(benchmark, shaped_set, tmp_path):
    inputs = sorted(glob.glob(os.path.join(shaped_set, "*", "*.safetensors")))
    in_bytes = sum(os.path.getsize(p) for p in inputs)
    out_bytes = sum(os.path.getsize(p) for p in glob.glob(os.path.join(shaped_set, "base", "*.safetensors")))
    out_dir = str(tmp_path / "sculpted")
    cold = _drop_caches()

    # The floor: read every input once (cold), write one merged-size output durably.
    t0 = time.perf_counter()
    subprocess.run(f"cat {' '.join(inputs)} > /dev/null", shell=True, check=True)
    subprocess.run(["dd", "if=/dev/zero", f"of={tmp_path / 'floor.bin'}", "bs=16M",
                    f"count={out_bytes // 2**24 + 1}", "conv=fsync", "status=none"], check=True)
    floor = time.perf_counter() - t0
    os.remove(tmp_path / "floor.bin")
    _drop_caches()

    cmd = [sys.executable, "-m", "smfa_cli.main", "sculpt", "-f", os.path.join(shaped_set, "forget"),
           "-a", os.path.join(shaped_set, "anchor"), "--base", os.path.join(shaped_set, "base"), "--k", "1.0",
           "-o", out_dir, "--emit", "merged", "--overwrite", "--no-progress"]
    res = {}

    def run():
        res["wall"], res["rss"] = _run(cmd)

    benchmark.pedantic(run, rounds=1, iterations=1)
    ratio = res["wall"] / floor
    benchmark.extra_info.update({
        "shape": SHAPE, "cold_cache": cold, "input_gb": in_bytes / 1e9, "output_gb": out_bytes / 1e9,
        "io_floor_s": floor, "sculpt_wall_s": res["wall"], "wall_over_floor": ratio,
        "peak_rss_gib": res["rss"] / 2**30,
    })
    print(f"\n{SHAPE}: inputs {in_bytes / 1e9:.2f} GB, output {out_bytes / 1e9:.2f} GB, cold={cold}: "
          f"I/O floor {floor:.1f}s, sculpt {res['wall']:.1f}s ({ratio:.2f}x floor), "
          f"peak RSS {res['rss'] / 2**30:.2f} GiB")
    assert os.path.exists(os.path.join(out_dir, "model.safetensors.index.json"))
