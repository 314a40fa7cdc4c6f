"""The streaming engine (smfa_core.sculpt / merge / inspect) against the in-memory contract."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import smfa_core
from smfa_core.backends import reference
from smfa_core.engine import chunk_elems
from smfa_core.errors import SmfaError
from smfa_core.sweep import parse_sweep

SHAPES = {"layers.0.mlp.up_proj.weight": (300, 517), "layers.0.attn.q_proj.weight": (64, 64),
          "layers.1.mlp.down_proj.weight": (1, 3), "norm.weight": (129,)}


def _deltas(dtype=torch.bfloat16, seed=0, opposite_frac=0.3):
    g = torch.Generator().manual_seed(seed)
    f, a = {}, {}
    for n, s in SHAPES.items():
        fv = torch.randn(s, generator=g)
        av = torch.randn(s, generator=g) * 0.5
        flip = torch.rand(s, generator=g) < opposite_frac
        av = torch.where(flip, -fv, av)  # exact opposites
        fv.view(-1)[:5] = 0.0
        f[n], a[n] = fv.to(dtype), av.to(dtype)
    return f, a


@pytest.fixture
def dense(tmp_path):
    f, a = _deltas()
    save_file(f, tmp_path / "f.safetensors")
    save_file(a, tmp_path / "a.safetensors")
    return tmp_path, f, a


def _expected(f, a, k, mode="both", base=None):
    out = {}
    for n in f:
        o, _ = smfa_core.sculpt_tensor(f[n], a[n], k, mode=mode, backend="reference",
                                       base=None if base is None else base[n])
        out[n] = o
    return out


def _bits_equal(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.dtype == y.dtype and x.shape == y.shape and torch.equal(x.view(-1).view(torch.uint8),
                                                                     y.view(-1).view(torch.uint8))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("mode", ["both", "conflict", "magnitude", "none"])
def test_delta_matches_sculpt_tensor(dense, backend, mode):
    if backend == "cpu" and "ok" not in smfa_core.available_backends()["cpu"][:2]:
        pytest.skip("cpu backend not built")
    d, f, a = dense
    rep = smfa_core.sculpt(str(d / "f.safetensors"), str(d / "a.safetensors"), k=0.8, mode=mode,
                           out=str(d / "out"), backend=backend)
    got = load_file(d / "out" / "delta.safetensors")
    exp = _expected(f, a, 0.8, mode)
    assert set(got) == set(exp)
    for n in exp:
        assert _bits_equal(got[n], exp[n]), n
    rows = {r["name"]: r for r in rep.tensors}
    for n in f:
        _, st = smfa_core.sculpt_tensor(f[n], a[n], 0.8, mode=mode, backend="reference")
        assert rows[n]["masked"] == st.masked and rows[n]["conflict"] == st.conflict
        assert rows[n]["rho"] == st.rho and rows[n]["t"] == st.t
    on_disk = json.loads((d / "out" / "smfa_report.json").read_text())
    assert on_disk["totals"]["masked"] == sum(r["masked"] for r in rep.tensors)


def test_chunking_does_not_change_bits(tmp_path):
    g = torch.Generator().manual_seed(3)
    f = {"w": torch.randn(700, 301, generator=g).to(torch.bfloat16)}  # 210700 elems: 4 blocks
    a = {"w": torch.randn(700, 301, generator=g).to(torch.bfloat16)}
    save_file(f, tmp_path / "f.safetensors")
    save_file(a, tmp_path / "a.safetensors")
    outs = []
    for i, mb in enumerate([0.01, 64]):  # one block per chunk vs one chunk
        assert chunk_elems(mb) == (65536 if mb < 1 else 64 * 2**20 // 4)
        rep = smfa_core.sculpt(str(tmp_path / "f.safetensors"), str(tmp_path / "a.safetensors"), k=1.0,
                               out=str(tmp_path / f"o{i}"), chunk_mb=mb, emit=["delta", "mask"])
        outs.append((load_file(tmp_path / f"o{i}" / "delta.safetensors")["w"], rep.tensors[0]))
    assert _bits_equal(outs[0][0], outs[1][0])
    assert outs[0][1]["rho"] == outs[1][1]["rho"] and outs[0][1]["masked"] == outs[1][1]["masked"]


def test_mask_output_unpacks_to_the_mask(dense):
    d, f, a = dense
    smfa_core.sculpt(str(d / "f.safetensors"), str(d / "a.safetensors"), k=1.0, out=str(d / "o"),
                     emit=["mask"])
    packed = load_file(d / "o" / "mask.safetensors")
    for n in f:
        _, m = reference.masks(f[n].float().view(-1), a[n].float().view(-1),
                               smfa_core.sculpt_tensor(f[n], a[n], 1.0, backend="reference")[1].t, 3)
        assert torch.equal(packed[n], reference.pack_bits(m)), n


def test_rho_scope_global(dense):
    d, f, a = dense
    rep = smfa_core.sculpt(str(d / "f.safetensors"), str(d / "a.safetensors"), k=1.0, out=str(d / "o"),
                           rho_scope="global")
    nf = sum(float((x.float().double() ** 2).sum()) for x in f.values()) ** 0.5
    na = sum(float((x.float().double() ** 2).sum()) for x in a.values()) ** 0.5
    g = rep.extra["rho_global"]
    assert g == pytest.approx(nf / (na + 1e-8), rel=1e-12)
    got = load_file(d / "o" / "delta.safetensors")
    for n in f:
        exp, _ = smfa_core.sculpt_tensor(f[n], a[n], 1.0, rho=g, backend="reference")
        assert _bits_equal(got[n], exp)


def test_merged_equals_base_plus_sculpted(tmp_path):
    g = torch.Generator().manual_seed(1)
    base = {n: torch.randn(s, generator=g).to(torch.bfloat16) for n, s in SHAPES.items()}
    base["extra.int_buffer"] = torch.arange(10, dtype=torch.int64)
    base["untouched.weight"] = torch.randn(33, 7, generator=g).to(torch.float16)
    os.makedirs(tmp_path / "base")
    save_file({k: v for k, v in base.items() if "layers.0" in k}, tmp_path / "base" / "model-00001-of-00002.safetensors",
              metadata={"format": "pt"})
    save_file({k: v for k, v in base.items() if "layers.0" not in k}, tmp_path / "base" / "model-00002-of-00002.safetensors",
              metadata={"format": "pt"})
    wm = {k: ("model-00001-of-00002.safetensors" if "layers.0" in k else "model-00002-of-00002.safetensors")
          for k in base}
    (tmp_path / "base" / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 1},
                                                                                "weight_map": wm}))
    (tmp_path / "base" / "config.json").write_text('{"model_type": "toy"}')
    (tmp_path / "base" / "tokenizer.json").write_text("{}")
    f, a = _deltas(torch.float32)
    save_file(f, tmp_path / "f.safetensors")
    save_file(a, tmp_path / "a.safetensors")
    smfa_core.sculpt(str(tmp_path / "f.safetensors"), str(tmp_path / "a.safetensors"), k=1.0,
                     base=str(tmp_path / "base"), out=str(tmp_path / "m"))
    out = tmp_path / "m"
    assert sorted(os.listdir(out)) == sorted(["config.json", "tokenizer.json", "model-00001-of-00002.safetensors",
                                              "model-00002-of-00002.safetensors", "model.safetensors.index.json",
                                              "smfa_report.json"])
    idx = json.loads((out / "model.safetensors.index.json").read_text())
    assert idx["weight_map"] == wm
    merged = {**load_file(out / "model-00001-of-00002.safetensors"), **load_file(out / "model-00002-of-00002.safetensors")}
    exp = _expected(f, a, 1.0, base=base)
    for n in base:
        if n in exp:
            assert _bits_equal(merged[n], exp[n]), n
            assert merged[n].dtype == torch.bfloat16
        else:
            assert _bits_equal(merged[n], base[n]), n


def test_merge_command_is_mode_none(dense, tmp_path):
    d, f, a = dense
    base = {n: torch.zeros(s, dtype=torch.float32) for n, s in SHAPES.items()}
    save_file(base, tmp_path / "base.safetensors")
    smfa_core.merge(str(tmp_path / "base.safetensors"), str(d / "f.safetensors"), out=str(tmp_path / "mm"))
    got = load_file(tmp_path / "mm" / "base.safetensors")
    for n in f:
        assert _bits_equal(got[n], f[n].float()), n


def test_missing_anchor(tmp_path):
    f, a = _deltas()
    save_file(f, tmp_path / "f.safetensors")
    del a["norm.weight"]
    save_file(a, tmp_path / "a.safetensors")
    with pytest.raises(SmfaError, match=r"norm\.weight.*missing from the anchor.*--missing-anchor keep"):
        smfa_core.sculpt(str(tmp_path / "f.safetensors"), str(tmp_path / "a.safetensors"), k=1, out=str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()
    rep = smfa_core.sculpt(str(tmp_path / "f.safetensors"), str(tmp_path / "a.safetensors"), k=1,
                           out=str(tmp_path / "o"), missing_anchor="keep")
    assert _bits_equal(load_file(tmp_path / "o" / "delta.safetensors")["norm.weight"], f["norm.weight"])
    assert [r["masked"] for r in rep.tensors if r["name"] == "norm.weight"] == [0]


def _no_leftovers(parent):
    return [p for p in os.listdir(parent) if "smfa-tmp" in p] == []


@pytest.mark.parametrize("case", ["shape", "nan", "inf_anchor", "int", "k", "mode", "exists", "emit"])
def test_bad_input_is_a_clear_error_and_publishes_nothing(tmp_path, case):
    f, a = _deltas()
    kw = {"k": 1.0}
    if case == "shape":
        a["layers.0.attn.q_proj.weight"] = torch.zeros(64, 63, dtype=torch.bfloat16)
        msg = r"layers\.0\.attn\.q_proj\.weight.*shape"
    elif case == "nan":
        f["layers.0.mlp.up_proj.weight"][7, 9] = float("nan")
        msg = r"layers\.0\.mlp\.up_proj\.weight.*forget.*NaN or Inf"
    elif case == "inf_anchor":
        a["norm.weight"][0] = float("inf")
        msg = r"norm\.weight.*anchor.*NaN or Inf"
    elif case == "int":
        f["norm.weight"] = torch.arange(129, dtype=torch.int32)
        a["norm.weight"] = torch.arange(129, dtype=torch.int32)
        msg = r"norm\.weight.*dtype"
    elif case == "k":
        kw["k"] = -1.0
        msg = r"--k must be"
    elif case == "mode":
        kw["mode"] = "sideways"
        msg = r"--mode"
    elif case == "exists":
        os.makedirs(tmp_path / "o")
        msg = r"exists; pass --overwrite"
    else:
        kw["emit"] = ["merged"]
        msg = r"--emit merged needs --base"
    save_file(f, tmp_path / "f.safetensors")
    save_file(a, tmp_path / "a.safetensors")
    with pytest.raises(SmfaError, match=msg):
        smfa_core.sculpt(str(tmp_path / "f.safetensors"), str(tmp_path / "a.safetensors"), out=str(tmp_path / "o"), **kw)
    assert (tmp_path / "o").exists() == (case == "exists")
    assert _no_leftovers(tmp_path)


def test_overwrite_replaces(dense):
    d, f, a = dense
    for k in (1.0, 0.5):
        smfa_core.sculpt(str(d / "f.safetensors"), str(d / "a.safetensors"), k=k, out=str(d / "o"), overwrite=True)
    rep = json.loads((d / "o" / "smfa_report.json").read_text())
    assert rep["options"]["k"] == 0.5
    assert _no_leftovers(d)


def test_inspect_counts_equal_sculpt_counts(dense):
    d, f, a = dense
    ks = [0.0, 0.5, 1.0, 2.5]
    res = smfa_core.inspect(str(d / "f.safetensors"), str(d / "a.safetensors"), ks=ks)
    for r in res["tensors"]:
        for i, k in enumerate(ks):
            _, st = smfa_core.sculpt_tensor(f[r["name"]], a[r["name"]], k, backend="reference")
            assert r["masked"][i] == st.masked and r["conflict"] == st.conflict
    total = sum(x.numel() for x in f.values())
    assert res["overall"]["masked_frac"][0] == pytest.approx(res["overall"]["conflict"] / total)
    assert all(x >= y for x, y in zip(res["overall"]["masked_frac"], res["overall"]["masked_frac"][1:]))
    assert set(res["layers"]) == {"lang.000", "lang.001", "other"}


def test_parse_sweep():
    assert parse_sweep("0:1:0.25") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_sweep("1,2.5") == [1.0, 2.5]
    for bad in ("0:1", "a:b:c", "1:0:0.1", "0:1:0", "-1,2"):
        with pytest.raises(SmfaError):
            parse_sweep(bad)


def test_anchor_with_extra_and_differently_prefixed_tensors(tmp_path):
    f, a = _deltas()
    save_file(f, tmp_path / "f.safetensors")
    a2 = {f"model.{n}": v for n, v in a.items()}  # another prefix, matched by module path
    a2["model.layers.9.mlp.up_proj.weight"] = torch.ones(3, 3, dtype=torch.bfloat16)  # not in forget
    save_file(a2, tmp_path / "a.safetensors")
    smfa_core.sculpt(str(tmp_path / "f.safetensors"), str(tmp_path / "a.safetensors"), k=0.8, out=str(tmp_path / "o"))
    got = load_file(tmp_path / "o" / "delta.safetensors")
    exp = _expected(f, a, 0.8)
    assert set(got) == set(f)
    for n in exp:
        assert _bits_equal(got[n], exp[n]), n


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_staged_pipeline_and_backends_give_the_same_bits(tmp_path, backend):
    """The GPU slot pipeline (run on CPU with staged buffers) and every backend write the
    same files as the plain CPU path."""
    if not smfa_core.available_backends()[backend].startswith("ok"):
        pytest.skip(f"{backend} backend unavailable here: {smfa_core.available_backends()[backend]}")
    g = torch.Generator().manual_seed(5)
    shapes = {"a.weight": (300, 701), "b.weight": (5, 3)}
    base = {n: torch.randn(s, generator=g).to(torch.bfloat16) for n, s in shapes.items()}
    f = {n: torch.randn(s, generator=g) * 0.1 for n, s in shapes.items()}
    a = {n: torch.randn(s, generator=g).to(torch.bfloat16) * 0.1 for n, s in shapes.items()}
    save_file(base, tmp_path / "base.safetensors")
    save_file(f, tmp_path / "f.safetensors")
    save_file(a, tmp_path / "a.safetensors")
    args = (str(tmp_path / "f.safetensors"), str(tmp_path / "a.safetensors"))
    kw = {"k": 0.9, "base": str(tmp_path / "base.safetensors"), "emit": ["merged", "delta", "mask"], "chunk_mb": 0.01}
    r0 = smfa_core.sculpt(*args, out=str(tmp_path / "plain"), backend="reference", **kw)
    r1 = smfa_core.sculpt(*args, out=str(tmp_path / "staged"), backend=backend, _staged=True, **kw)
    assert [t["masked"] for t in r0.tensors] == [t["masked"] for t in r1.tensors]
    for fn in ("base.safetensors", "delta.safetensors", "mask.safetensors"):
        x, y = load_file(tmp_path / "plain" / fn), load_file(tmp_path / "staged" / fn)
        assert set(x) == set(y)
        for n in x:
            assert _bits_equal(x[n], y[n]), (fn, n)


def test_staging_memory_is_bounded_by_the_chunk_not_the_model(tmp_path):
    """--device cuda keeps two slots of chunk-sized buffers (run here in staged mode on CPU):
    a model with 3x the rows holds the same staging bytes, at most slots x roles x chunk."""
    from smfa_core.engine import chunk_elems

    g = torch.Generator().manual_seed(9)
    figures = []
    for rows in (300, 900):
        d = tmp_path / str(rows)
        d.mkdir()
        shapes = {"a.weight": (rows, 701), "b.weight": (5, 3), "c.weight": (rows // 3, 1031)}
        for name, scale in (("base", 1.0), ("f", 0.1), ("a", 0.1)):
            save_file({n: (torch.randn(s, generator=g) * scale).to(torch.bfloat16) for n, s in shapes.items()},
                      d / f"{name}.safetensors")
        rep = smfa_core.sculpt(str(d / "f.safetensors"), str(d / "a.safetensors"), k=1.0,
                               base=str(d / "base.safetensors"), out=str(d / "o"),
                               emit=["merged", "delta", "mask"], chunk_mb=0.01, _staged=True)
        figures.append(rep.extra["staging_bytes"])
    assert figures[0] == figures[1]
    step = chunk_elems(0.01)
    total = sum(figures[0].values())
    assert 0 < total <= 2 * 13 * 4 * step  # 2 slots x (7 inputs + 3 outputs + 3 copies back) x fp32 chunk
    assert rows * 701 > 4 * step  # the larger model is many chunks


def test_device_errors(dense):
    d, _, _ = dense
    with pytest.raises(SmfaError, match="--device"):
        smfa_core.sculpt(str(d / "f.safetensors"), str(d / "a.safetensors"), out=str(d / "o"), device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(SmfaError, match="no CUDA device"):
            smfa_core.sculpt(str(d / "f.safetensors"), str(d / "a.safetensors"), out=str(d / "o"), device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (no CUDA device here)")
def test_cuda_device_expands_lora_on_the_gpu(tmp_path):
    """--device cuda: LoRA tiles are GEMMs on the GPU (only the factors cross PCIe); the result
    equals the CPU run up to GEMM rounding."""
    peft = pytest.importorskip("peft")
    from tiny_models import build_model

    from smfa_core.sources import open_source

    base = tmp_path / "base"
    model = build_model("llama")
    model.save_pretrained(base)
    dirs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        pm = peft.get_peft_model(build_model("llama"), peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                                                       target_modules=["q_proj", "down_proj"]))
        pm.save_pretrained(tmp_path / f"lora{seed}")
        dirs.append(str(tmp_path / f"lora{seed}"))
    with open_source(dirs[0]) as src, open_source(dirs[0]) as cpu_src:
        src.compute_on("cuda")
        n = src.names()[0]
        x, _ = src.read(n, 0, src.numel(n))
        assert x.is_cuda
        torch.testing.assert_close(x.cpu(), cpu_src.read(n, 0, src.numel(n))[0], rtol=1e-5, atol=1e-7)
    kw = {"k": 1.0, "base": str(base), "emit": ["merged", "mask"], "chunk_mb": 0.5}
    r_cpu = smfa_core.sculpt(*dirs, out=str(tmp_path / "cpu"), **kw)
    r_gpu = smfa_core.sculpt(*dirs, out=str(tmp_path / "gpu"), device="cuda", **kw)
    mc, mg = load_file(tmp_path / "cpu" / "mask.safetensors"), load_file(tmp_path / "gpu" / "mask.safetensors")
    x, y = load_file(tmp_path / "cpu" / "model.safetensors"), load_file(tmp_path / "gpu" / "model.safetensors")
    assert set(x) == set(y) and set(mc) == set(mg) and len(r_cpu.tensors) == len(r_gpu.tensors) > 0

    def bits(m, numel):
        return ((m.to(torch.int32)[:, None] >> torch.arange(8)) & 1).reshape(-1)[:numel].bool()

    for n in x:
        agree = torch.ones(x[n].numel(), dtype=torch.bool)
        if n in mc:  # entries on the mask boundary may flip with GEMM rounding: a few at most
            agree = bits(mc[n], x[n].numel()) == bits(mg[n], x[n].numel())
            assert int((~agree).sum()) <= max(2, x[n].numel() // 1000), n
        torch.testing.assert_close(y[n].reshape(-1)[agree], x[n].reshape(-1)[agree], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (no CUDA device here)")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_device_streaming_matches_cpu(tmp_path, backend):
    if not smfa_core.available_backends()[backend].startswith("ok"):
        pytest.skip(f"{backend}: {smfa_core.available_backends()[backend]}")
    g = torch.Generator().manual_seed(6)
    shapes = {"a.weight": (999, 517), "b.weight": (7, 3)}
    base = {n: torch.randn(s, generator=g).to(torch.bfloat16) for n, s in shapes.items()}
    f = {n: (torch.randn(s, generator=g) * 0.1).to(torch.bfloat16) for n, s in shapes.items()}
    a = {n: (torch.randn(s, generator=g) * 0.1).to(torch.bfloat16) for n, s in shapes.items()}
    for name, d in (("base", base), ("f", f), ("a", a)):
        save_file(d, tmp_path / f"{name}.safetensors")
    args = (str(tmp_path / "f.safetensors"), str(tmp_path / "a.safetensors"))
    kw = {"k": 1.1, "base": str(tmp_path / "base.safetensors"), "emit": ["merged", "delta", "mask"], "chunk_mb": 0.5}
    smfa_core.sculpt(*args, out=str(tmp_path / "cpu"), backend="reference", **kw)
    smfa_core.sculpt(*args, out=str(tmp_path / "gpu"), backend=backend, device="cuda", **kw)
    for fn in ("base.safetensors", "delta.safetensors", "mask.safetensors"):
        x, y = load_file(tmp_path / "cpu" / fn), load_file(tmp_path / "gpu" / fn)
        for n in x:
            assert _bits_equal(x[n], y[n]), (fn, n)


def test_all_emits_when_the_base_orders_tensors_differently(tmp_path):
    """The base's shards hold the tensors in another order than the delta file: every output
    is declared in the processing order (a regression: `--emit merged --emit delta` failed)."""
    g = torch.Generator().manual_seed(8)
    shapes = {"a.weight": (40, 9), "m.weight": (7, 5), "z.weight": (33, 3)}
    base = {n: torch.randn(s, generator=g).to(torch.bfloat16) for n, s in shapes.items()}
    os.makedirs(tmp_path / "base")
    shards = {"model-00001-of-00002.safetensors": ["z.weight", "m.weight"], "model-00002-of-00002.safetensors": ["a.weight"]}
    for fn, names in shards.items():
        save_file({n: base[n] for n in names}, tmp_path / "base" / fn)
    wm = {n: fn for fn, names in shards.items() for n in names}
    (tmp_path / "base" / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    f = {n: torch.randn(s, generator=g) * 0.1 for n, s in shapes.items()}
    a = {n: torch.randn(s, generator=g) * 0.1 for n, s in shapes.items()}
    save_file(f, tmp_path / "f.safetensors")
    save_file(a, tmp_path / "a.safetensors")
    smfa_core.sculpt(str(tmp_path / "f.safetensors"), str(tmp_path / "a.safetensors"), k=1.0,
                     base=str(tmp_path / "base"), out=str(tmp_path / "o"), emit=["merged", "delta", "mask"])
    delta = load_file(tmp_path / "o" / "delta.safetensors")
    merged = {**load_file(tmp_path / "o" / "model-00001-of-00002.safetensors"),
              **load_file(tmp_path / "o" / "model-00002-of-00002.safetensors")}
    for n in shapes:
        exp, _ = smfa_core.sculpt_tensor(f[n], a[n], 1.0, backend="reference")
        assert _bits_equal(delta[n], exp), n
        assert _bits_equal(merged[n], (base[n].float() + exp).to(torch.bfloat16)), n
    assert set(load_file(tmp_path / "o" / "mask.safetensors")) == set(shapes)


def test_leftovers_of_killed_runs_are_cleaned(dense):
    d, _, _ = dense
    dead = 2**22 + 12345  # above pid_max: never a live process
    stale = d / f".o.smfa-tmp-{dead}-abc123"
    stale.mkdir()
    (stale / "delta.safetensors").write_bytes(b"partial")
    smfa_core.sculpt(str(d / "f.safetensors"), str(d / "a.safetensors"), k=1.0, out=str(d / "o"))
    assert not stale.exists() and (d / "o" / "smfa_report.json").exists()
