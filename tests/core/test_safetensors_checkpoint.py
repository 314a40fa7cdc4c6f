"""smfa_core.safetensors_io.checkpoint: sharded checkpoints and their index, single files and
directories, index inconsistencies, and transformers loading our shards (and we theirs)."""

from __future__ import annotations

import json
import os

import pytest
import safetensors.torch as st
import torch
from safetensors_utils import bits, same

from smfa_core.errors import SmfaError
from smfa_core.safetensors_io import (
    Checkpoint,
    SafetensorsWriter,
    write_index,
)


def _write_sharded(dirpath, tensors: dict[str, torch.Tensor], per_shard: int) -> dict[str, str]:
    names = list(tensors)
    groups = [names[i : i + per_shard] for i in range(0, len(names), per_shard)]
    weight_map = {}
    total = 0
    for i, g in enumerate(groups):
        fn = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        with SafetensorsWriter(
            os.path.join(dirpath, fn), [(n, tensors[n].dtype, tuple(tensors[n].shape)) for n in g]
        ) as w:
            for n in g:
                w.write(n, tensors[n])
                weight_map[n] = fn
                total += tensors[n].numel() * tensors[n].element_size()
    write_index(dirpath, weight_map, total, metadata={"note": "x"})
    return weight_map


def test_checkpoint_sharded(tmp_path):
    gen = torch.Generator().manual_seed(8)
    tensors = {f"layer.{i}.w": torch.randn(3, i + 1, generator=gen).to(torch.bfloat16) for i in range(11)}
    d = tmp_path / "ck"
    d.mkdir()
    wm = _write_sharded(str(d), tensors, per_shard=2)
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    assert idx["metadata"] == {"note": "x", "total_size": sum(t.numel() * 2 for t in tensors.values())}
    assert list(idx["weight_map"]) == sorted(wm)
    with Checkpoint(d) as ck:
        assert ck.path == str(d)
        assert ck.files == [f"model-{i:05d}-of-00006.safetensors" for i in range(1, 7)]
        assert ck.names() == list(tensors)
        assert ck.index_metadata["note"] == "x"
        for n, t in tensors.items():
            assert ck.file_of(n) == wm[n]
            ti = ck.info(n)
            assert ti.path == os.path.join(str(d), wm[n]) and ti.shape == tuple(t.shape)
            assert same(ck.read(n), t)
            buf = torch.empty(100, dtype=torch.uint8)
            assert torch.equal(bits(ck.read_into(n, buf, 1, 3)), bits(t.reshape(-1)[1:3]))
        assert ck.reader(ck.files[0]) is ck.reader(ck.files[0])
        assert ck.metadata(ck.files[0]) == {"format": "pt"}
        with pytest.raises(SmfaError, match=f"{d}.*'missing'"):
            ck.info("missing")
        with pytest.raises(SmfaError, match="'missing'"):
            ck.read("missing")
        with pytest.raises(KeyError):
            ck.file_of("missing")
        try:
            ck.info("missing")
        except SmfaError as e:
            assert str(e).startswith(str(d)) and isinstance(e, KeyError)
        assert "missing" not in ck and ck.names()[0] in ck and len(ck) == len(tensors)
        with pytest.raises(SmfaError, match="nofile"):
            ck.reader("nofile.safetensors")
    # the index file itself may be given
    with Checkpoint(d / "model.safetensors.index.json") as ck:
        assert ck.names() == list(tensors)


def test_checkpoint_single_file_and_dir(tmp_path):
    t = {"a": torch.ones(2), "b": torch.zeros(3, dtype=torch.int32)}
    f = tmp_path / "delta.safetensors"
    st.save_file(t, str(f))
    with Checkpoint(f) as ck:
        assert ck.files == ["delta.safetensors"] and ck.index_metadata == {}
        assert sorted(ck.names()) == ["a", "b"]
        assert same(ck.read("b"), t["b"])
    d = tmp_path / "d"
    d.mkdir()
    st.save_file(t, str(d / "model.safetensors"))
    (d / "config.json").write_text("{}")
    with Checkpoint(d) as ck:
        assert ck.files == ["model.safetensors"]
    d2 = tmp_path / "adapter"
    d2.mkdir()
    st.save_file(t, str(d2 / "adapter_model.safetensors"))
    with Checkpoint(d2) as ck:
        assert ck.files == ["adapter_model.safetensors"]
    st.save_file(t, str(d2 / "other.safetensors"))
    with pytest.raises(SmfaError, match="index"):
        Checkpoint(d2)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SmfaError, match=str(empty)):
        Checkpoint(empty)
    with pytest.raises(SmfaError, match="nope"):
        Checkpoint(tmp_path / "nope")


def test_checkpoint_index_inconsistencies(tmp_path):
    t = {"a": torch.ones(2), "b": torch.ones(3), "c": torch.ones(1)}

    def make(name):
        d = tmp_path / name
        d.mkdir()
        st.save_file({"a": t["a"], "b": t["b"]}, str(d / "s1.safetensors"))
        st.save_file({"c": t["c"]}, str(d / "s2.safetensors"))
        return d

    def index(d, wm, extra=None):
        body = {"metadata": {"total_size": 24}, "weight_map": wm, **(extra or {})}
        (d / "model.safetensors.index.json").write_text(json.dumps(body))

    good = {"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"}
    d = make("ok")
    index(d, good)
    with Checkpoint(d) as ck:
        assert ck.names() == ["a", "b", "c"] and ck.files == ["s1.safetensors", "s2.safetensors"]

    d = make("missing_shard")
    index(d, {**good, "c": "s3.safetensors"})
    with pytest.raises(SmfaError, match=r"s3\.safetensors.*'c'|'c'.*s3\.safetensors"):
        Checkpoint(d)

    d = make("listed_not_present")
    index(d, {**good, "d": "s2.safetensors"})
    with pytest.raises(SmfaError, match=r"index\.json.*'d'.*s2\.safetensors"):
        Checkpoint(d)

    d = make("present_not_listed")
    index(d, {"a": "s1.safetensors", "c": "s2.safetensors"})
    with pytest.raises(SmfaError, match=r"s1\.safetensors.*'b'.*not in"):
        Checkpoint(d)

    d = make("wrong_shard")
    index(d, {"a": "s1.safetensors", "b": "s2.safetensors", "c": "s2.safetensors"})
    with pytest.raises(SmfaError, match="'b'"):
        Checkpoint(d)

    d = make("no_weight_map")
    index(d, {}, extra={"weight_map": None})
    with pytest.raises(SmfaError, match="weight_map"):
        Checkpoint(d)

    d = make("escape")
    index(d, {**good, "c": "../s2.safetensors"})
    with pytest.raises(SmfaError, match="outside"):
        Checkpoint(d)

    d = make("bad_json")
    (d / "model.safetensors.index.json").write_text("{nope")
    with pytest.raises(SmfaError, match=r"model\.safetensors\.index\.json"):
        Checkpoint(d)

    d = make("bad_shard")
    index(d, good)
    with open(d / "s2.safetensors", "ab") as f:
        f.write(b"junk")
    with pytest.raises(SmfaError, match=r"s2\.safetensors.*trailing"):
        Checkpoint(d)


# --------------------------------------------------------------------------------------------
# transformers interop


def _tiny_llama():
    import transformers as tf

    cfg = tf.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return tf.LlamaForCausalLM(cfg).eval()


def test_transformers_loads_our_shards_and_we_read_theirs(tmp_path):
    import transformers as tf

    model = _tiny_llama()
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    out = tmp_path / "ours"
    out.mkdir()
    model.config.save_pretrained(str(out))
    _write_sharded(str(out), sd, per_shard=5)
    assert len([f for f in os.listdir(out) if f.endswith(".safetensors")]) > 2
    loaded = tf.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    lsd = loaded.state_dict()
    assert set(lsd) == set(sd)
    for k, v in sd.items():
        assert same(lsd[k], v), k

    # and the other way: a checkpoint sharded by save_pretrained reads back identically
    theirs = tmp_path / "theirs"
    model.save_pretrained(str(theirs), max_shard_size="20KB")
    with Checkpoint(theirs) as ck:
        assert len(ck.files) > 1
        assert set(ck.names()) == set(sd)
        for k, v in sd.items():
            assert same(ck.read(k), v), k
