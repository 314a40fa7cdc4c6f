"""Why does the cpu reproduction's original not see its images? A probe, not a test.

The `cpu` preset's original answers image-understanding questions below chance (Fact ~2/10,
results/RESULTS.md §1). This trains the preset's from-scratch base on the *general* data only
(the understanding questions on general images: glasses, earrings, hat, smiling, hair, shirt,
background; clinical description, lesion colour / location / pattern, eye side) and scores the
same questions on the benchmark's profile images, which this probe never trains on. Variants
change one lever at a time: the number of distinct general images, the vision tower's size,
the training steps. Each variant is one line of `OUT/probe.json`; reruns skip finished ones.

    python benchmarks/vision_probe.py OUT [--variant NAME]...

Takes ~10 min per variant on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from statistics import fmean

# name -> (general images, vision hidden, vision layers, steps, training rewordings per question)
VARIANTS: dict[str, tuple[int, int, int, int, int]] = {
    "preset": (400, 64, 2, 800, 0),          # the cpu preset's tower and images
    "images3k": (3000, 64, 2, 800, 0),       # 7.5x the distinct images, same steps
    "images3k-reworded": (3000, 64, 2, 800, 3),  # + 3 training rewordings of each question
    "tower128x4": (3000, 128, 4, 800, 0),    # a bigger tower on the same images
    "images3k-long": (3000, 64, 2, 2400, 0),  # 3x the steps
}
MODEL = dict(vocab_size=2048, hidden=256, layers=4, heads=4, kv_heads=2, intermediate=1024)


def run_variant(out: Path, name: str, seed: int) -> dict:
    from smfa_eval.build import build
    from smfa_eval.evaluate import run_eval
    from smfa_eval.judges import get_judge
    from smfa_eval.reproduce.base_model import build_base
    from smfa_eval.reproduce.preset import Stage
    from smfa_eval.reproduce.training import train_stage
    from smfa_eval.schema import Bench

    n_images, v_hidden, v_layers, steps, rewordings = VARIANTS[name]
    work = out / name
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.time()
    build(work / "bench", profiles=40, seed=seed, general_images=n_images, image_size=112, overwrite=True,
          rewordings=rewordings)
    bench = Bench(work / "bench")
    vocab = MODEL["vocab_size"]
    shape = {k: v for k, v in MODEL.items() if k != "vocab_size"}
    build_base(bench.root, work / "base", arch="qwen2_5_vl", vocab_size=vocab, seed=seed,
               vision_hidden=v_hidden, vision_layers=v_layers, **shape)
    # the preset's stage recipe (every parameter, cosine, AdamW beta2 .98) on the general data only
    data = ("general", "reworded_general") if rewordings else ("general",)
    stage = Stage(data=data, max_steps=steps, lr=2e-3, batch_size=16)
    (work / "train").mkdir()
    train_stage(bench, work / "base", stage, work / "train", seed=seed, progress=False)
    scores = {}
    for items in ("eval", "eval_template"):
        ev = work / f"eval-{items}"
        run_eval(bench.root, "forget10", ev, judge=get_judge("heuristic"), judge_name="heuristic",
                 model=str(work / "train" / "model"), batch_size=16, max_new_tokens=32, limit=80,
                 tasks=("image_understanding",), progress=False, items_file=items)
        rows = [json.loads(line) for line in (ev / "items.jsonl").open()]
        by_attr: dict[str, list[float]] = {}
        for r in rows:
            by_attr.setdefault(r["attribute"], []).append(r["fact"])
        scores[items] = {"fact": round(fmean(r["fact"] for r in rows), 2), "n": len(rows),
                         "by_attribute": {a: round(fmean(v), 2) for a, v in sorted(by_attr.items())}}
    return {"variant": name, "general_images": n_images, "vision": [v_hidden, v_layers], "steps": steps,
            "rewordings": rewordings,
            "wall_s": round(time.time() - t0, 1), **scores}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    ap.add_argument("--seed", type=int, default=1)  # the dev seed: a probe never looks at the test seed
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    done_file = args.out / "probe.json"
    done = json.loads(done_file.read_text()) if done_file.exists() else []
    for name in args.variant or list(VARIANTS):
        if any(d["variant"] == name for d in done):
            continue
        res = run_variant(args.out, name, args.seed)
        print(json.dumps(res), flush=True)
        done.append(res)
        tmp = done_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(done, indent=1))
        tmp.replace(done_file)


if __name__ == "__main__":
    main()
