"""smfa_core.sources: dense, checkpoint and LoRA delta sources (LoRA checked against peft's merge)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import build_model, load_model, saved_model

from smfa_core.backends.reference import delta_f32
from smfa_core.errors import SmfaError
from smfa_core.safetensors_io import Checkpoint
from smfa_core.sources import detect_kind, open_source

peft = pytest.importorskip("peft")


def full_delta(src, name) -> torch.Tensor:
    n = math.prod(src.shape(name))
    x, xb = src.read(name, 0, n)
    return delta_f32(x, xb).clone().view(src.shape(name))


def check_ranges(src, name):
    """Arbitrary ranges (single element, crossing rows, whole, empty) equal slices of the full delta."""
    ref = full_delta(src, name).reshape(-1)
    n = ref.numel()
    cols = n // src.shape(name)[0]
    ranges = [(0, n), (0, 1), (n - 1, n), (n // 2, n // 2), (cols - 3, 2 * cols + 5), (cols, 3 * cols), (5, n - 7)]
    ranges += [(cols + 1, cols + 2)]
    for s, e in ranges:
        s, e = max(0, min(s, n)), max(0, min(e, n))
        s = min(s, e)
        x, xb = src.read(name, s, e)
        got = delta_f32(x, xb)
        assert got.shape == (e - s,)
        torch.testing.assert_close(got, ref[s:e], rtol=0, atol=0, msg=f"{name} [{s}, {e})")


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def base_dirs(tmp_path_factory):
    return lambda kind: saved_model(tmp_path_factory, kind)


_LIVE_OF: dict = {}


def disk_to_live(kind, path) -> dict[str, str]:
    """On-disk name -> live state_dict name, established by value through transformers' own loader."""
    if kind not in _LIVE_OF:
        ckpt = Checkpoint(path)
        live = load_model(kind, path).state_dict()
        out = {}
        for d in ckpt.names():
            t = ckpt.read(d)
            hits = [k for k, v in live.items() if v.shape == t.shape and torch.equal(v, t)]
            if d in hits:  # tied weights (GPT-2 lm_head) share values
                hits = [d]
            assert len(hits) == 1, (d, hits)
            out[d] = hits[0]
        ckpt.close()
        _LIVE_OF[kind] = out
    return _LIVE_OF[kind]


def make_adapter(tmp_path, kind, **lora_kwargs):
    """(adapter dir, merged live state_dict): a random (non-zero) LoRA on the tiny `kind` model."""
    torch.manual_seed(1)
    model = build_model(kind)
    cfg = peft.LoraConfig(init_lora_weights=False, **lora_kwargs)
    pm = peft.get_peft_model(model, cfg)
    with torch.no_grad():  # every trainable tensor clearly non-zero
        for p in pm.parameters():
            if p.requires_grad:  # LoRA factors, modules_to_save copies, trained biases
                p.add_(torch.randn_like(p) * 0.1)
    adir = tmp_path / f"adapter-{kind}"
    pm.save_pretrained(adir)
    merged = pm.merge_and_unload().state_dict()
    return adir, merged


def check_against_merge(kind, base_dir, adir, merged, *, expect_names=None):
    base = Checkpoint(base_dir)
    live_of = disk_to_live(kind, base_dir)
    src = open_source(adir, base=base, target_names=base.names(), label="forget")
    try:
        assert src.kind == "lora"
        names = src.names()
        assert set(names) <= set(base.names())
        if expect_names is not None:
            assert set(names) == set(expect_names)
        for name in base.names():
            w = base.read(name).to(torch.float32)
            m = merged[live_of[name]].to(torch.float32)
            if name not in names:
                assert torch.equal(w, m), f"{name} changed by the merge but is not in the source"
                continue
            assert src.shape(name) == tuple(w.shape)
            d = full_delta(src, name)
            ref = m - w
            assert ref.abs().max() > 0, name
            err = (w + d - m).abs().max() / ref.abs().max()
            assert err <= 1e-5, f"{name}: rel err {err}"
        return src, base
    except BaseException:
        src.close()
        base.close()
        raise


LM_LINEAR = ["q_proj", "v_proj", "down_proj"]


# --------------------------------------------------------------------------------------------
# LoRA vs peft merge_and_unload


def test_lora_plain_llama(tmp_path, base_dirs):
    adir, merged = make_adapter(tmp_path, "llama", r=4, lora_alpha=8, target_modules=LM_LINEAR)
    src, base = check_against_merge("llama", base_dirs("llama"), adir, merged)
    assert len(src.names()) == 6
    name = "model.layers.1.mlp.down_proj.weight"
    assert src.dtype(name) == torch.float32
    check_ranges(src, name)
    check_ranges(src, "model.layers.0.self_attn.v_proj.weight")
    src.close()
    # without target names: canonical names are the module weight names
    with open_source(adir, base=None) as s2:
        assert name in s2.names()
        torch.testing.assert_close(full_delta(s2, name), full_delta(open_source(adir), name), rtol=0, atol=0)
    base.close()


@pytest.mark.parametrize("tile", [1, 50, 64 * 3 + 7])
def test_lora_tiles_smaller_than_reads(tmp_path, monkeypatch, tile):
    """Reads that span several row tiles (and partial tiles) equal slices of the full delta, bit for bit."""
    import smfa_core.sources as sources

    adir, _ = make_adapter(tmp_path, "llama", r=4, lora_alpha=8, target_modules=["down_proj", "embed_tokens"])
    with open_source(adir) as ref_src:
        ref = {n: full_delta(ref_src, n) for n in ref_src.names()}
    monkeypatch.setattr(sources, "LORA_TILE_ELEMS", tile)
    with open_source(adir) as src:
        for n in src.names():
            d = full_delta(src, n)  # other tile shapes: same values up to matmul rounding
            assert (d - ref[n]).abs().max() <= 1e-6 * ref[n].abs().max()
            check_ranges(src, n)


def test_lora_compute_on_a_device(tmp_path, monkeypatch):
    """compute_on(device) moves the factors and expands every tile there (the GPU of
    --device cuda): reads land on that device with the same values; here the device is the
    CPU (tests/core/test_engine.py checks a GPU when there is one)."""
    import smfa_core.sources as sources

    monkeypatch.setattr(sources, "LORA_TILE_ELEMS", 50)  # reads span several tiles
    adir, _ = make_adapter(tmp_path, "llama", r=4, lora_alpha=8, target_modules=["down_proj"])
    with open_source(adir) as ref_src, open_source(adir) as src:
        src.compute_on(torch.device("cpu"))
        for n in src.names():
            assert torch.equal(full_delta(src, n), full_delta(ref_src, n))
            x, xb = src.read(n, 3, 3)
            assert x.numel() == 0 and xb is None
            x, _ = src.read(n, 7, 7 + 3 * 64 + 5)
            assert x.device.type == "cpu" and torch.equal(x, ref_src.read(n, 7, 7 + 3 * 64 + 5)[0])


def test_lora_rslora(tmp_path, base_dirs):
    adir, merged = make_adapter(tmp_path, "llama", r=4, lora_alpha=8, use_rslora=True, target_modules=LM_LINEAR)
    src, base = check_against_merge("llama", base_dirs("llama"), adir, merged)
    src.close()
    base.close()


def test_lora_rank_and_alpha_patterns(tmp_path, base_dirs):
    adir, merged = make_adapter(
        tmp_path,
        "llama",
        r=4,
        lora_alpha=8,
        target_modules=LM_LINEAR + ["o_proj"],
        rank_pattern={"q_proj": 2, r"layers\.1\.mlp\.down_proj": 6},
        alpha_pattern={"v_proj": 3, "down_proj": 12, "model.layers.0.self_attn.o_proj": 5},
    )
    cfg = json.loads((adir / "adapter_config.json").read_text())
    assert cfg["rank_pattern"] and cfg["alpha_pattern"]
    src, base = check_against_merge("llama", base_dirs("llama"), adir, merged)
    src.close()
    base.close()


def test_lora_embedding_and_modules_to_save(tmp_path, base_dirs):
    adir, merged = make_adapter(
        tmp_path, "llama", r=4, lora_alpha=16, target_modules=["embed_tokens", "q_proj"], modules_to_save=["lm_head"]
    )
    src, base = check_against_merge("llama", base_dirs("llama"), adir, merged)
    assert "model.embed_tokens.weight" in src.names() and "lm_head.weight" in src.names()
    check_ranges(src, "model.embed_tokens.weight")
    check_ranges(src, "lm_head.weight")
    x, xb = src.read("lm_head.weight", 3, 40)
    assert xb is not None and x.dtype == torch.float32  # saved - base
    src.close()
    base.close()
    with pytest.raises(SmfaError, match=r"lm_head.*--base is required"):
        open_source(adir)


def test_lora_fan_in_fan_out_gpt2(tmp_path, base_dirs):
    adir, merged = make_adapter(
        tmp_path, "gpt2", r=4, lora_alpha=8, fan_in_fan_out=True, target_modules=["c_attn", "c_proj", "c_fc"]
    )
    src, base = check_against_merge("gpt2", base_dirs("gpt2"), adir, merged)
    assert src.shape("transformer.h.0.mlp.c_fc.weight") == (32, 128)  # Conv1D: (in, out)
    check_ranges(src, "transformer.h.0.mlp.c_fc.weight")
    check_ranges(src, "transformer.h.1.attn.c_attn.weight")
    src.close()
    base.close()


def test_lora_trained_biases_gpt2(tmp_path, base_dirs):
    adir, merged = make_adapter(tmp_path, "gpt2", r=2, lora_alpha=4, fan_in_fan_out=True, target_modules=["c_fc"], bias="all")
    src, base = check_against_merge("gpt2", base_dirs("gpt2"), adir, merged)
    assert {"transformer.h.0.mlp.c_fc.bias", "transformer.ln_f.bias"} <= set(src.names())
    src.close()
    base.close()


def test_lora_llava_onevision(tmp_path, base_dirs):
    target = r".*(language_model.*\.(q_proj|v_proj|down_proj)|multi_modal_projector\.linear_1|vision_tower.*\.fc1)$"
    adir, merged = make_adapter(tmp_path, "llava_onevision", r=4, lora_alpha=8, target_modules=target)
    src, base = check_against_merge("llava_onevision", base_dirs("llava_onevision"), adir, merged)
    names = set(src.names())
    assert "language_model.model.layers.0.mlp.down_proj.weight" in names
    assert "multi_modal_projector.linear_1.weight" in names
    assert "vision_tower.encoder.layers.1.mlp.fc1.weight" in names
    check_ranges(src, "language_model.model.layers.1.self_attn.q_proj.weight")
    src.close()
    base.close()


def test_lora_qwen2_5_vl(tmp_path, base_dirs):
    target = r".*(language_model.*\.(q_proj|v_proj|down_proj)|visual.*\.qkv|lm_head)$"
    adir, merged = make_adapter(tmp_path, "qwen2_5_vl", r=4, lora_alpha=8, target_modules=target)
    src, base = check_against_merge("qwen2_5_vl", base_dirs("qwen2_5_vl"), adir, merged)
    names = set(src.names())
    assert {"model.layers.0.mlp.down_proj.weight", "visual.blocks.0.attn.qkv.weight", "lm_head.weight"} <= names
    src.close()
    base.close()


def test_lora_conv(tmp_path):
    """Conv LoRA (e.g. a patch embedding): ΔW = s·B@A over flattened kernels."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.lin = torch.nn.Linear(8, 4)

    torch.manual_seed(0)
    net = Net()
    base_sd = {k: v.clone() for k, v in net.state_dict().items()}
    save_file(base_sd, str(tmp_path / "base.safetensors"))
    pm = peft.get_peft_model(net, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["conv"], init_lora_weights=False))
    pm.save_pretrained(tmp_path / "ad")
    merged = pm.merge_and_unload().state_dict()
    with Checkpoint(tmp_path / "base.safetensors") as base, open_source(tmp_path / "ad", base=base) as src:
        assert src.names() == ["conv.weight"]
        d = full_delta(src, "conv.weight")
        torch.testing.assert_close(base_sd["conv.weight"] + d, merged["conv.weight"], rtol=1e-5, atol=1e-7)
        check_ranges(src, "conv.weight")


# --------------------------------------------------------------------------------------------
# LoRA errors


@pytest.fixture
def plain_adapter(tmp_path):
    adir, _ = make_adapter(tmp_path, "llama", r=2, lora_alpha=4, target_modules=["q_proj"])
    return adir


def _edit_config(adir, **changes):
    p = adir / "adapter_config.json"
    cfg = json.loads(p.read_text())
    cfg.update(changes)
    p.write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"use_dora": True}, "use_dora"),
        ({"lora_bias": True}, "lora_bias"),
        ({"peft_type": "IA3"}, "peft_type"),
        ({"layer_replication": [[0, 2]]}, "layer_replication"),
        ({"init_lora_weights": "pissa"}, "init_lora_weights"),
        ({"r": 3}, "rank 2.*r=3"),
    ],
)
def test_lora_unsupported_options(plain_adapter, changes, match):
    _edit_config(plain_adapter, **changes)
    with pytest.raises(SmfaError, match=match):
        open_source(plain_adapter)


def test_lora_missing_files(plain_adapter, tmp_path):
    (plain_adapter / "adapter_model.safetensors").rename(plain_adapter / "adapter_model.bin")
    with pytest.raises(SmfaError, match="convert it to safetensors"):
        open_source(plain_adapter)
    (plain_adapter / "adapter_model.bin").unlink()
    with pytest.raises(SmfaError, match="no adapter_model.safetensors"):
        open_source(plain_adapter)
    with pytest.raises(SmfaError, match="adapter_config.json"):
        open_source(tmp_path, kind="lora")
    with pytest.raises(SmfaError, match="no such file"):
        open_source(tmp_path / "nope")


def test_lora_factor_shape_mismatch(tmp_path):
    (tmp_path / "ad").mkdir()
    key = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file(
        {f"{key}.lora_A.weight": torch.zeros(2, 32), f"{key}.lora_B.weight": torch.zeros(32, 3)},
        str(tmp_path / "ad" / "adapter_model.safetensors"),
    )
    (tmp_path / "ad" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    with pytest.raises(SmfaError, match=r"q_proj.*shape \[2, 32\].*shape \[32, 3\]"):
        open_source(tmp_path / "ad")
    save_file({f"{key}.lora_A.weight": torch.zeros(2, 32)}, str(tmp_path / "ad" / "adapter_model.safetensors"))
    with pytest.raises(SmfaError, match="no lora_B"):
        open_source(tmp_path / "ad")


def test_lora_unmatched_names(plain_adapter, base_dirs):
    with Checkpoint(base_dirs("gpt2")) as other:  # another architecture: no q_proj at all
        with pytest.raises(SmfaError, match="q_proj"):
            open_source(plain_adapter, base=other, target_names=other.names())
    with pytest.raises(SmfaError, match=r"model\.layers\.0\.self_attn\.q_proj\.weight.*no counterpart"):
        open_source(plain_adapter, target_names=["transformer.h.0.attn.c_attn.weight", "lm_head.weight"])


# --------------------------------------------------------------------------------------------
# dense deltas and checkpoint deltas


def test_dense_file_and_sharded_dir(tmp_path):
    torch.manual_seed(0)
    d = {
        "model.layers.0.mlp.down_proj.weight": torch.randn(32, 64).to(torch.bfloat16),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(32, 32),
        "model.norm.weight": torch.randn(32).to(torch.float16),
    }
    save_file(d, str(tmp_path / "delta.safetensors"))
    assert detect_kind(tmp_path / "delta.safetensors") == "delta"
    with open_source(tmp_path / "delta.safetensors") as src:
        assert src.kind == "delta" and sorted(src.names()) == sorted(d)
        for n, t in d.items():
            assert src.shape(n) == tuple(t.shape) and src.dtype(n) == t.dtype
            x, xb = src.read(n, 0, t.numel())
            assert xb is None and torch.equal(x, t.reshape(-1))
            check_ranges(src, n)
    # sharded dir with index, names mapped onto another layout
    sh = tmp_path / "shards"
    sh.mkdir()
    names = list(d)
    save_file({names[0]: d[names[0]]}, str(sh / "d-00001-of-00002.safetensors"))
    save_file({n: d[n] for n in names[1:]}, str(sh / "d-00002-of-00002.safetensors"))
    wm = {names[0]: "d-00001-of-00002.safetensors", **{n: "d-00002-of-00002.safetensors" for n in names[1:]}}
    (sh / "d.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    assert detect_kind(sh) == "delta"
    live = ["model.language_model." + n[len("model.") :] for n in names] + ["lm_head.weight"]
    with open_source(sh, target_names=live, label="anchor") as src:
        assert sorted(src.names()) == sorted(live[:3])
        x, _ = src.read("model.language_model.layers.0.mlp.down_proj.weight", 70, 75)
        assert torch.equal(x, d[names[0]].reshape(-1)[70:75])
    with pytest.raises(SmfaError, match=r"anchor.*model\.norm\.weight"):
        open_source(sh, target_names=live[:2], label="anchor")


@pytest.fixture(scope="module")
def ft_dirs(tmp_path_factory):
    """(base dir, fine-tuned dir sharded, fine-tuned bf16 dir, ft state_dict fp32)."""
    root = tmp_path_factory.mktemp("ckpt")
    base_model = build_model("llava_onevision")
    base_model.save_pretrained(root / "base")
    torch.manual_seed(3)
    with torch.no_grad():
        for n, p in base_model.named_parameters():
            if "layers.0" in n:
                p.add_(torch.randn_like(p) * 0.01)
    base_model.save_pretrained(root / "ft", max_shard_size="40KB")
    base_model.to(torch.bfloat16).save_pretrained(root / "ft16")
    return root / "base", root / "ft", root / "ft16"


def test_checkpoint_minus_base(ft_dirs):
    base_dir, ft_dir, ft16_dir = ft_dirs
    assert detect_kind(ft_dir) == "checkpoint"
    assert len(list(ft_dir.glob("*.safetensors"))) > 1  # really sharded
    with pytest.raises(SmfaError, match="--base is required for checkpoint deltas"):
        open_source(ft_dir)
    with Checkpoint(base_dir) as base, Checkpoint(ft_dir) as ft:
        with open_source(ft_dir, base=base, target_names=base.names()) as src:
            assert src.kind == "checkpoint" and sorted(src.names()) == sorted(base.names())
            changed = 0
            for n in src.names():
                ref = ft.read(n) - base.read(n)
                assert torch.equal(full_delta(src, n), ref), n
                changed += bool(ref.abs().max() > 0)
            assert 0 < changed < len(src.names())  # identical tensors are included too
            check_ranges(src, "language_model.model.layers.0.mlp.up_proj.weight")
            assert src.dtype("image_newline") == torch.float32
        # bf16 fine-tune vs fp32 base: both upcast to fp32
        with open_source(ft16_dir, base=base) as src:
            n = "language_model.model.layers.0.mlp.up_proj.weight"
            assert src.dtype(n) == torch.float32
            x, xb = src.read(n, 0, 10)
            assert x.dtype == xb.dtype == torch.float32
            ft16 = Checkpoint(ft16_dir)
            assert torch.equal(x - xb, ft16.read(n).float().reshape(-1)[:10] - base.read(n).reshape(-1)[:10])
            ft16.close()


def test_checkpoint_tensor_missing_from_base(ft_dirs, tmp_path):
    base_dir, _ft, _ = ft_dirs
    extra = tmp_path / "ft"
    extra.mkdir()
    shutil.copy(base_dir / "config.json", extra / "config.json")
    with Checkpoint(base_dir) as base:
        tensors = {n: base.read(n) for n in base.names()[:3]}
        tensors["language_model.model.layers.0.mlp.extra_proj.weight"] = torch.zeros(2, 2)
        save_file(tensors, str(extra / "model.safetensors"))
        with pytest.raises(SmfaError, match=r"extra_proj\.weight.*no counterpart in base"):
            open_source(extra, base=base)
        tensors.pop("language_model.model.layers.0.mlp.extra_proj.weight")
        first = next(iter(tensors))
        tensors[first] = torch.zeros(3, 3)
        save_file(tensors, str(extra / "model.safetensors"))
        with pytest.raises(SmfaError, match="shape"):
            open_source(extra, base=base)


def test_detect_kind_and_bad_kind(plain_adapter, tmp_path):
    assert detect_kind(plain_adapter) == "lora"
    assert detect_kind(plain_adapter / "adapter_model.safetensors") == "lora"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SmfaError, match="cannot tell"):
        detect_kind(tmp_path / "empty")
    with pytest.raises(SmfaError, match="unknown delta kind"):
        open_source(plain_adapter, kind="dense")
    # an adapter read as a dense delta is allowed (explicit override): its raw keys are the names
    with open_source(plain_adapter / "adapter_model.safetensors", kind="delta") as src:
        assert any(n.endswith("lora_A.weight") for n in src.names())
