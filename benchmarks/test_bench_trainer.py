"""Step time of the shared loop (UnlearnTrainer + a method loss) against a plain
transformers.Trainer on the same tiny model, data and collator. Goal: within 5 %.

Run: .venv/bin/python -m pytest benchmarks/test_bench_trainer.py -q -s
"""

from __future__ import annotations

import os
import time

import torch

os.environ.setdefault("SMFA_PLUGINS", "")

STEPS = 40
REPEATS = 3


def _setup(tmp):
    from smfa_methods.api import FineTune
    from smfa_methods.collators import SFTCollator
    from smfa_methods.data import Example, ExampleDataset
    from smfa_methods.models import load_model, prepare_for_training
    from smfa_methods.tiny import make_tiny

    path = make_tiny("llama", tmp / "m", hidden=64, layers=2)
    exs = [Example(f"Where was person {i} born?", f"Person {i} was born in Lviv {i}.") for i in range(64)]
    loaded = load_model(path)
    return path, ExampleDataset(exs), SFTCollator(loaded.processor), FineTune(), load_model, prepare_for_training


def _run(kind, path, ds, coll, method, load_model, prepare, tmp) -> float:
    from transformers import Trainer, set_seed

    from smfa_methods.job import TrainConfig
    from smfa_methods.trainer import UnlearnTrainer, training_arguments

    set_seed(0)
    model = prepare(load_model(path).model, "full")
    args = training_arguments(TrainConfig(max_steps=STEPS, batch_size=8, lr=1e-3, logging_steps=1000), tmp / kind)
    if kind == "plain":
        tr = Trainer(model=model, args=args, train_dataset=ds, data_collator=coll)
    else:
        tr = UnlearnTrainer(model=model, args=args, train_dataset=ds, data_collator=coll, method=method)
    t = time.perf_counter()
    tr.train()
    return (time.perf_counter() - t) / STEPS


def test_step_time_vs_plain_trainer(tmp_path):
    torch.set_num_threads(1)
    setup = _setup(tmp_path)
    times = {"plain": [], "smfa": []}
    for _ in range(REPEATS):  # interleaved, best of REPEATS: other jobs share the CPU
        for kind in times:
            times[kind].append(_run(kind, *setup, tmp_path))
    plain, ours = min(times["plain"]), min(times["smfa"])
    ratio = ours / plain
    print(f"\nplain Trainer {plain * 1e3:.2f} ms/step, UnlearnTrainer {ours * 1e3:.2f} ms/step, ratio {ratio:.3f}")
    assert ratio < 1.25  # loose in CI (shared CPUs); the 5 % goal is checked in RESULTS.md
