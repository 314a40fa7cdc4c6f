"""Reading a masked adapter (`smfa sculpt --emit adapter`) against reading the same LoRA
adapter unmasked, measured side by side in one run.

    .venv/bin/python -m pytest benchmarks/test_bench_masked_adapter.py --benchmark-enable -s

Workload: 4 LoRA modules of 4096 x 4096 (r = 16), read in 64 MiB fp32 chunks as the engine
does. `lora` is LoraSource.read (one GEMM per tile); `masked` is MaskedAdapterSource.read
(the same GEMMs, plus reading the packed mask and zeroing the masked entries). The ratio
masked/lora is the price of the mask on a merge from a masked adapter.
"""

from __future__ import annotations

import json
import time

import pytest
import torch
from safetensors.torch import save_file

from smfa_core.engine import chunk_elems
from smfa_core.sources import MASK_FILE, MASKED_WEIGHTS, LoraSource, MaskedAdapterSource

ROWS = COLS = 4096
R = 16
MODULES = [f"model.layers.{i}.mlp.down_proj" for i in range(4)]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    d = tmp_path_factory.mktemp("masked-adapter")
    g = torch.Generator().manual_seed(0)
    weights = {}
    for m in MODULES:
        weights[f"base_model.model.{m}.lora_A.weight"] = torch.randn(R, COLS, generator=g) * 0.01
        weights[f"base_model.model.{m}.lora_B.weight"] = torch.randn(ROWS, R, generator=g) * 0.01
    cfg = {"peft_type": "LORA", "r": R, "lora_alpha": 2 * R, "target_modules": ["down_proj"]}
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    save_file(weights, d / "adapter_model.safetensors")  # the plain adapter
    save_file(weights, d / MASKED_WEIGHTS)
    masks = {f"{m}.weight": torch.randint(0, 256, (ROWS * COLS // 8,), dtype=torch.uint8, generator=g)
             for m in MODULES}
    save_file(masks, d / MASK_FILE)
    return d


def _read_all(src) -> None:
    step = chunk_elems(64)
    for n in src.names():
        for s in range(0, src.numel(n), step):
            src.read(n, s, min(src.numel(n), s + step))


def _best(fn, reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def test_masked_adapter_read_vs_plain_lora(adapter, benchmark):
    lora = LoraSource(str(adapter))
    masked = MaskedAdapterSource(str(adapter))
    assert lora.names() == masked.names()
    t_lora = _best(lambda: _read_all(lora))
    benchmark.pedantic(_read_all, args=(masked,), rounds=3, iterations=1)
    t_masked = benchmark.stats.stats.min
    n = len(MODULES) * ROWS * COLS
    ratio = t_masked / t_lora
    benchmark.extra_info.update({"lora_s": t_lora, "masked_s": t_masked, "masked_over_lora": ratio,
                                 "masked_melem_per_s": n / t_masked / 1e6})
    print(f"\n{n / 2**20:.0f} M elements: lora {t_lora:.3f} s ({n / t_lora / 1e6:.0f} M/s), "
          f"masked {t_masked:.3f} s ({n / t_masked / 1e6:.0f} M/s), masked/lora {ratio:.2f}x")
    lora.close()
    masked.close()
