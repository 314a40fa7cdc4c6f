"""Output helpers: shard plans and the write-behind thread."""

from __future__ import annotations

import pytest
import torch

from smfa_core.errors import SmfaError
from smfa_core.outputs import WriteBehind, shard_plan


def test_write_behind_keeps_order_and_copies():
    got = []
    wb = WriteBehind(64, depth=2)
    try:
        data = torch.arange(8, dtype=torch.int32)
        for i in range(20):
            data.fill_(i)
            wb.write(lambda name, b: got.append((name, bytes(b.numpy()))), f"t{i}", data)  # data reused at once
            if i % 7 == 0:
                wb.call(got.append, ("mark", i))
        wb.drain()
    finally:
        wb.close()
    writes = [g for g in got if g[0] != "mark"]
    assert [n for n, _ in writes] == [f"t{i}" for i in range(20)]
    assert all(b == torch.full((8,), i, dtype=torch.int32).numpy().tobytes() for i, (_, b) in enumerate(writes))
    assert got.index(("mark", 7)) == 8 + 1  # after t0..t7 and the mark at 0


def test_write_behind_error_reaches_the_main_thread():
    wb = WriteBehind(16, depth=1)
    try:
        def boom(name, data):
            raise SmfaError(f"{name}: disk full")

        wb.write(boom, "x.safetensors", torch.zeros(4))
        with pytest.raises(SmfaError, match="x.safetensors: disk full"):
            wb.drain()
        with pytest.raises(SmfaError):
            wb.write(boom, "y", torch.zeros(4))
    finally:
        wb.close()


def test_shard_plan_splits_by_size():
    ents = [(f"w{i}", torch.float32, (256,)) for i in range(5)]  # 1 KiB each
    plan = shard_plan(ents, "delta", 2048)
    assert [fn for fn, _ in plan] == [f"delta-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert [len(e) for _, e in plan] == [2, 2, 1]
    assert shard_plan(ents, "delta", 10**9)[0][0] == "delta.safetensors"
