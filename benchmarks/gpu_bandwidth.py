"""Kernel bandwidth of the GPU backends vs a device-to-device copy of the same bytes.

    python benchmarks/gpu_bandwidth.py [--n ELEMENTS] [--iters N]

For each available GPU backend (cuda, triton) and op, prints the time, the bytes the op
must move (reads + writes) and the fraction of copy bandwidth it reaches; first checks the
outputs against the CPU reference on a smaller input (same bits). Needs a CUDA device.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from smfa_core.backends import get_backend
from smfa_core.backends import reference as ref


def timed(fn, iters: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters / 1e3


def copy_time(nbytes: int, iters: int) -> float:
    """Seconds for a D2D copy moving nbytes in total (nbytes/2 read + nbytes/2 written)."""
    half = max(nbytes // 2, 16)
    src = torch.empty(half, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return timed(lambda: dst.copy_(src), iters)


def spot_check(be) -> list[str]:
    bad = []
    g = torch.Generator().manual_seed(0)
    n = 3 * 65536 + 5
    for dt in (torch.bfloat16, torch.float16, torch.float32):
        f, a, w, fb = (torch.randn(n, generator=g).to(dt) for _ in range(4))
        if not torch.equal(be.sumsq_blocks(f.cuda(), fb.cuda()).cpu(), ref.sumsq_blocks(f, fb)):
            bad.append(f"sumsq {dt}")
        o, m = torch.empty(n, dtype=dt, device="cuda"), torch.empty((n + 7) // 8, dtype=torch.uint8, device="cuda")
        ro, rm = torch.empty(n, dtype=dt), torch.empty((n + 7) // 8, dtype=torch.uint8)
        c = be.sculpt_chunk(f.cuda(), fb.cuda(), a.cuda(), None, 0.37, 3, w.cuda(), o, m).cpu()
        rc = ref.sculpt_chunk(f, fb, a, None, 0.37, 3, w, ro, rm)
        iv = torch.int32 if dt == torch.float32 else torch.int16
        if not (torch.equal(c, rc) and torch.equal(m.cpu(), rm) and torch.equal(o.cpu().view(iv), ro.view(iv))):
            bad.append(f"sculpt {dt}")
        ts = torch.tensor([0.0, 0.5, 1.0, 2.0])
        if not torch.equal(be.sweep_counts(f.cuda(), None, a.cuda(), None, ts.cuda()),
                           ref.sweep_counts(f, None, a, None, ts)):
            bad.append(f"sweep {dt}")
    return bad


def measure(be, name: str, dt: torch.dtype, n: int, iters: int, copy_gbs: dict) -> list[dict]:
    es = torch.tensor([], dtype=dt).element_size()
    f = torch.randn(n, device="cuda").to(dt)
    a = torch.randn(n, device="cuda").to(dt)
    w = torch.randn(n, device="cuda").to(dt)
    out = torch.empty_like(w)
    mask = torch.empty((n + 7) // 8, dtype=torch.uint8, device="cuda")
    ts = torch.linspace(0, 2, 16, device="cuda")
    cases = {
        "sumsq_blocks": (lambda: be.sumsq_blocks(f, None), n * es),
        "sculpt+merge+mask": (lambda: be.sculpt_chunk(f, None, a, None, 0.37, 3, w, out, mask),
                              4 * n * es + n // 8),
        "sculpt (delta, no mask)": (lambda: be.sculpt_chunk(f, None, a, None, 0.37, 3, None, out, None),
                                    3 * n * es),
        "sweep_counts (16 t)": (lambda: be.sweep_counts(f, None, a, None, ts), 2 * n * es),
    }
    rows = []
    for op, (fn, nbytes) in cases.items():
        sec = timed(fn, iters)
        if nbytes not in copy_gbs:
            copy_gbs[nbytes] = nbytes / copy_time(nbytes, iters) / 1e9
        gbs = nbytes / sec / 1e9
        rows.append({"backend": name, "dtype": str(dt).removeprefix("torch."), "op": op,
                     "ms": round(sec * 1e3, 3), "GB/s": round(gbs, 1),
                     "copy GB/s": round(copy_gbs[nbytes], 1), "vs copy": round(gbs / copy_gbs[nbytes], 3)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1 << 28)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_bandwidth: no CUDA device")
        return 2
    n, iters = args.n, args.iters
    print(f"device: {torch.cuda.get_device_name()}  n={n:,}  torch {torch.__version__} CUDA {torch.version.cuda}")
    copy_gbs = {}
    rows, failures = [], []
    for name in ("cuda", "triton"):
        try:
            be = get_backend(name, "cuda")
        except Exception as exc:
            print(f"{name}: unavailable ({exc})")
            continue
        bad = spot_check(be)
        print(f"{name}: bit check vs CPU reference: {'OK' if not bad else 'MISMATCH ' + ', '.join(bad)}")
        failures += [f"{name}: {b}" for b in bad]
        for dt in (torch.bfloat16, torch.float32):
            rows += measure(be, name, dt, n, iters, copy_gbs)
            torch.cuda.empty_cache()
    print(f"{'backend':8} {'dtype':9} {'op':26} {'ms':>9} {'GB/s':>8} {'copy':>8} {'vs copy':>8}")
    for r in rows:
        print(f"{r['backend']:8} {r['dtype']:9} {r['op']:26} {r['ms']:9.3f} {r['GB/s']:8.1f} "
              f"{r['copy GB/s']:8.1f} {r['vs copy']:8.3f}")
    print("JSON " + json.dumps({"rows": rows, "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
