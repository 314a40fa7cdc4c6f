"""Finite or nothing: sculpt and merge never publish NaN/Inf weights unless asked
(--allow-nonfinite), adapter configs are validated key by key, and LoRA factors without their
config are not read as a dense delta. Real safetensors files and real PEFT adapters."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import peft
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file
from tiny_models import build_model

from smfa_cli.main import cli

NAMES = ("model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight")


def _base(root: Path, dtype: torch.dtype, value: float | None = None) -> Path:
    g = torch.Generator().manual_seed(0)
    d = root / f"base-{str(dtype)[6:]}"
    d.mkdir()
    t = {n: (torch.full((16, 8), value) if value is not None else torch.randn(16, 8, generator=g)).to(dtype)
         for n in NAMES}
    save_file(t, d / "model.safetensors", metadata={"format": "pt"})
    (d / "config.json").write_text('{"model_type": "toy"}')
    return d


def _delta(path: Path, bad: float | None = None, value: float | None = None, names=NAMES) -> Path:
    g = torch.Generator().manual_seed(1)
    t = {n: torch.full((16, 8), value) if value is not None else torch.randn(16, 8, generator=g) for n in names}
    if bad is not None:
        t[names[-1]][3, 2] = bad
    save_file(t, path)
    return path


def _fails(args: list[str], match: str, out: Path) -> str:
    r = CliRunner().invoke(cli, [*args, "--no-progress"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert match in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert not out.exists() and not [e for e in os.listdir(out.parent) if ".smfa-tmp-" in e]
    return r.output


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_merge_of_a_dense_delta_with_nan_or_inf_is_refused(tmp_path, bad):
    base, delta = _base(tmp_path, torch.bfloat16), _delta(tmp_path / "d.safetensors", bad)
    _fails(["merge", "--base", str(base), "-d", str(delta), "-o", str(tmp_path / "m")],
           f"tensor {NAMES[1]!r}: the merged output (torch.bfloat16) has NaN or Inf", tmp_path / "m")


@pytest.mark.parametrize("dtype, value", [(torch.bfloat16, 3e38), (torch.float16, 60000.0)])
def test_merge_that_overflows_the_base_dtype_is_refused(tmp_path, dtype, value):
    base, delta = _base(tmp_path, dtype, value), _delta(tmp_path / "d.safetensors", value=value)
    _fails(["merge", "--base", str(base), "-d", str(delta), "-o", str(tmp_path / "m")],
           "overflows the base dtype", tmp_path / "m")


def test_allow_nonfinite_writes_the_nonfinite_merge(tmp_path):
    base, delta = _base(tmp_path, torch.bfloat16), _delta(tmp_path / "d.safetensors", math.nan)
    r = CliRunner().invoke(cli, ["merge", "--base", str(base), "-d", str(delta), "-o", str(tmp_path / "m"),
                                 "--allow-nonfinite", "--no-progress"])
    assert r.exit_code == 0, r.output
    merged = load_file(tmp_path / "m" / "model.safetensors")
    assert torch.isnan(merged[NAMES[1]][3, 2]) and torch.isfinite(merged[NAMES[0]]).all()


@pytest.mark.parametrize("emit", ["delta", "mask"])
def test_missing_anchor_keep_with_a_nan_forget_tensor_is_refused(tmp_path, emit):
    forget = _delta(tmp_path / "f.safetensors", math.nan)
    anchor = _delta(tmp_path / "a.safetensors", names=NAMES[:1])  # NAMES[1] (the NaN one) has no anchor
    _fails(["sculpt", "-f", str(forget), "-a", str(anchor), "--missing-anchor", "keep", "--emit", emit,
            "-o", str(tmp_path / "o")], f"tensor {NAMES[1]!r}", tmp_path / "o")


def test_zero_anchor_with_eps_zero_is_a_correct_result(tmp_path):
    forget = _delta(tmp_path / "f.safetensors")
    anchor = _delta(tmp_path / "a.safetensors", value=0.0)
    for mode, masked in (("both", 0), ("magnitude", 16 * 8)):  # no sign conflict; every entry dominates 0
        out = tmp_path / f"o-{mode}"
        r = CliRunner().invoke(cli, ["sculpt", "-f", str(forget), "-a", str(anchor), "--eps", "0", "--mode", mode,
                                     "-o", str(out), "--json", "--no-progress"])
        assert r.exit_code == 0, r.output
        rows = json.loads(r.output)["tensors"]
        assert [row["masked"] for row in rows] == [masked, masked]


# --------------------------------------------------------------------------------------------
# LoRA adapters


@pytest.fixture(scope="module")
def lora(tmp_path_factory) -> tuple[Path, Path]:
    """(base checkpoint dir, PEFT adapter dir) on the tiny llama."""
    root = tmp_path_factory.mktemp("lora")
    build_model("llama").save_pretrained(root / "base")
    torch.manual_seed(1)
    pm = peft.get_peft_model(build_model("llama"), peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"],
                                                                     init_lora_weights=False))
    pm.save_pretrained(root / "adapter")
    return root / "base", root / "adapter"


def _copy_adapter(src: Path, dst: Path, **config) -> Path:
    dst.mkdir()
    cfg = json.loads((src / "adapter_config.json").read_text())
    cfg.update(config)
    (dst / "adapter_config.json").write_text(json.dumps(cfg))  # NaN/Infinity: what json (and peft) write
    (dst / "adapter_model.safetensors").write_bytes((src / "adapter_model.safetensors").read_bytes())
    return dst


@pytest.mark.parametrize("config, key", [
    ({"lora_alpha": math.nan}, "lora_alpha must be a positive finite number"),
    ({"lora_alpha": math.inf}, "lora_alpha must be a positive finite number"),
    ({"alpha_pattern": {"q_proj": math.nan}}, "alpha_pattern['q_proj'] must be a positive finite number"),
    ({"alpha_pattern": {"q_proj": "8"}}, "alpha_pattern['q_proj'] must be a positive finite number"),
    ({"rank_pattern": {"q_proj": 0}}, "rank_pattern['q_proj'] must be a positive integer"),
    ({"r": 2.5}, "r must be a positive integer"),
])
def test_bad_adapter_config_values_name_the_file_and_key(lora, tmp_path, config, key):
    base, adapter = lora
    bad = _copy_adapter(adapter, tmp_path / "bad", **config)
    out = _fails(["merge", "--base", str(base), "-d", str(bad), "-o", str(tmp_path / "m")], key, tmp_path / "m")
    assert str(bad / "adapter_config.json") in out


def test_nan_inside_lora_b_is_refused(lora, tmp_path):
    base, adapter = lora
    bad = _copy_adapter(adapter, tmp_path / "bad")
    w = load_file(bad / "adapter_model.safetensors")
    key = next(k for k in w if "lora_B" in k)
    w[key][0, 0] = math.nan
    save_file(w, bad / "adapter_model.safetensors")
    _fails(["merge", "--base", str(base), "-d", str(bad), "-o", str(tmp_path / "m")],
           "has NaN or Inf values", tmp_path / "m")


def test_lora_factors_without_adapter_config_are_not_a_dense_delta(lora, tmp_path):
    base, adapter = lora
    bare = _copy_adapter(adapter, tmp_path / "bare")
    (bare / "adapter_config.json").unlink()
    _fails(["merge", "--base", str(base), "-d", str(bare), "-o", str(tmp_path / "m")],
           "is a LoRA factor, but there is no adapter_config.json", tmp_path / "m")


def test_in_memory_sculpt_that_would_overflow_changes_nothing():
    import smfa_core
    from smfa_core.errors import SmfaError

    model = build_model("llama").to(torch.bfloat16)
    names = ["model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight"]
    params = dict(model.named_parameters())
    with torch.no_grad():
        params[names[1]][0, 0] = 3e38  # + 3e38 below: beyond bf16's max
    f = {n: torch.full(params[n].shape, 1e-3) for n in names}
    f[names[1]][0, 0] = 3e38
    before = {n: p.detach().clone() for n, p in params.items()}
    with pytest.raises(SmfaError, match=f"tensor {names[1]!r}: base \\+ delta overflows torch.bfloat16"):
        smfa_core.sculpt_model_(model, f, {n: -v for n, v in f.items()}, 1.0, mode="none", chunk_mb=0.01)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # layer 0 untouched too
