"""smfa_core.safetensors_io reader and writer: bit-exact round trips with the official library
for every dtype, chunked reads and writes, errors."""

from __future__ import annotations

import os
import random
import struct

import pytest
import safetensors
import safetensors.torch as st
import torch
from safetensors_utils import SHAPES, bits, official_types, random_tensor, same

from smfa_core.errors import SmfaError
from smfa_core.safetensors_io import (
    SafetensorsReader,
    SafetensorsWriter,
    dtype_name,
)


def test_read_official_all_dtypes_bit_exact(tmp_path):
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for name, dt in official_types().items():
        for i, shape in enumerate(SHAPES):
            tensors[f"{name}.{i}"] = random_tensor(dt, shape, gen)
    path = tmp_path / "all.safetensors"
    st.save_file(tensors, str(path), metadata={"hello": "world", "x": ""})
    with SafetensorsReader(path) as r:
        assert r.path == str(path)
        assert r.metadata == {"hello": "world", "x": ""}
        assert set(r.tensors) == set(tensors)
        offs = [(ti.start, ti.end) for ti in r.tensors.values()]
        assert offs == sorted(offs)  # file (offset) order
        assert offs[-1][1] == os.path.getsize(path)
        for name, t in tensors.items():
            ti = r.tensors[name]
            assert ti.shape == tuple(t.shape) and ti.torch_dtype == t.dtype and ti.path == str(path)
            got = r.read(name)
            assert same(got, t), name
            # read_into a reused byte buffer returns a flat view with the right dtype
            buf = torch.empty(ti.nbytes + 5, dtype=torch.uint8)
            flat = r.read_into(name, buf)
            assert flat.dtype == t.dtype and flat.shape == (t.numel(),)
            assert t.numel() == 0 or flat.data_ptr() == buf.data_ptr()
            assert torch.equal(bits(flat), bits(t))


def test_read_into_chunks(tmp_path):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(37, 53, generator=gen).to(torch.bfloat16)
    b = torch.randn(1001, generator=gen, dtype=torch.float64)
    path = str(tmp_path / "c.safetensors")
    st.save_file({"w": w, "b": b}, path)
    rng = random.Random(2)
    buf = torch.empty(64 * 1024, dtype=torch.uint8)
    with SafetensorsReader(path) as r:
        for name, t in (("w", w), ("b", b)):
            flat = t.reshape(-1)
            n = flat.numel()
            for _ in range(60):
                a = rng.randrange(0, n + 1)
                z = rng.randrange(a, n + 1)
                got = r.read_into(name, buf, a, z)
                assert got.dtype == t.dtype and got.numel() == z - a
                assert torch.equal(bits(got), bits(flat[a:z]))
            # sequential chunks cover the tensor exactly
            parts = []
            for a in range(0, n, 97):
                parts.append(r.read_into(name, buf, a, min(n, a + 97)).clone())
            assert torch.equal(bits(torch.cat(parts)), bits(flat))
            # into a tensor of the tensor's own dtype (2-D, contiguous)
            out = torch.empty(n + 3, dtype=t.dtype)
            assert r.read_into(name, out, 1, 4).data_ptr() == out.data_ptr()
            # bytes
            bb = r.read_bytes_into(name, buf, 3, 11)
            assert bytes(bb.tolist()) == bytes(bits(t)[3:11].tolist())
        with pytest.raises(SmfaError, match="outside"):
            r.read_into("w", buf, 5, 4)
        with pytest.raises(SmfaError, match="outside"):
            r.read_into("w", buf, 0, w.numel() + 1)
        with pytest.raises(SmfaError, match="outside"):
            r.read_bytes_into("w", buf, 0, w.numel() * 2 + 1)
        with pytest.raises(ValueError, match="bytes"):
            r.read_into("w", torch.empty(10, dtype=torch.uint8))
        with pytest.raises(ValueError):
            r.read_into("w", torch.empty(10, 10).t())  # not contiguous
        with pytest.raises(SmfaError, match=r"c\.safetensors.*'nope'"):
            r.read("nope")
    with pytest.raises(SmfaError, match="closed"):
        r.read("w")


def test_reader_opens_no_mmap_and_closes(tmp_path):
    path = str(tmp_path / "x.safetensors")
    st.save_file({"a": torch.ones(4)}, path)
    r = SafetensorsReader(path)
    fd = r._fd
    assert fd is not None
    os.fstat(fd)
    r.close()
    r.close()  # idempotent
    with pytest.raises(OSError):
        os.fstat(fd)


def test_missing_and_directory(tmp_path):
    with pytest.raises(SmfaError, match="nothere"):
        SafetensorsReader(tmp_path / "nothere.safetensors")
    with pytest.raises(SmfaError, match=str(tmp_path)):
        SafetensorsReader(tmp_path)


# --------------------------------------------------------------------------------------------
# writing: loads with the official library


def test_writer_roundtrip_official(tmp_path):
    gen = torch.Generator().manual_seed(3)
    tensors = {}
    for name, dt in official_types().items():
        for i, shape in enumerate(SHAPES):
            tensors[f"{name}.{i}"] = random_tensor(dt, shape, gen)
    path = str(tmp_path / "ours.safetensors")
    decl = [
        (k, v.dtype if i % 2 else dtype_name(v.dtype), tuple(v.shape))
        for i, (k, v) in enumerate(tensors.items())
    ]
    with SafetensorsWriter(path, decl, metadata={"k": "v"}) as w:
        for k, v in tensors.items():
            w.write(k, v)
    loaded = st.load_file(path)
    assert set(loaded) == set(tensors)
    for k, v in tensors.items():
        assert same(loaded[k], v), k
    with safetensors.safe_open(path, framework="pt") as f:
        assert f.metadata() == {"format": "pt", "k": "v"}
    (n,) = struct.unpack("<Q", open(path, "rb").read(8))
    assert n % 8 == 0
    assert w.total_size == os.path.getsize(path)
    with SafetensorsReader(path) as r:  # our own reader agrees, in declared order
        assert list(r.tensors) == [d[0] for d in decl]


def test_writer_matches_official_bytes(tmp_path):
    """Declared in the official library's order, our file is byte-identical to save_file's."""
    gen = torch.Generator().manual_seed(4)
    tensors = {
        "embed": torch.randn(8, 4, generator=gen).to(torch.bfloat16),
        "norm": torch.randn(4, generator=gen),
        "ids": torch.arange(5),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(1.5, dtype=torch.float16),
    }
    ref = str(tmp_path / "ref.safetensors")
    st.save_file(tensors, ref, metadata={"format": "pt"})
    with SafetensorsReader(ref) as r:
        order = list(r.tensors)
    ours = str(tmp_path / "ours.safetensors")
    with SafetensorsWriter(ours, [(k, tensors[k].dtype, tuple(tensors[k].shape)) for k in order]) as w:
        for k in order:
            w.write(k, tensors[k])
    assert open(ours, "rb").read() == open(ref, "rb").read()


def test_writer_chunked_mixed_inputs(tmp_path):
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(123, 7, generator=gen).to(torch.float16)
    b = torch.randn(0, 5)
    c = torch.randn(311, generator=gen)
    path = str(tmp_path / "chunked.safetensors")
    rng = random.Random(6)
    with SafetensorsWriter(
        path, [("a", "F16", (123, 7)), ("b", torch.float32, (0, 5)), ("c", "F32", (311,))]
    ) as w:
        fa = a.reshape(-1)
        i = 0
        while i < fa.numel():
            j = min(fa.numel(), i + rng.randrange(1, 200))
            w.write("a", fa[i:j])  # tensor chunks of the declared dtype
            i = j
        assert w.remaining("a") == 0
        # "b" is zero-size: skipped automatically; "c" as raw bytes / memoryview / uint8 tensor
        raw = bytes(bits(c).tolist())
        w.write("c", raw[:100])
        w.write("c", memoryview(raw)[100:900])
        w.write("c", b"")
        w.write("c", bits(c)[900:])
    loaded = st.load_file(path)
    assert same(loaded["a"], a) and same(loaded["b"], b) and same(loaded["c"], c)


def test_writer_noncontiguous_tensor(tmp_path):
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    path = str(tmp_path / "t.safetensors")
    with SafetensorsWriter(path, [("t", "F32", (4, 3))]) as w:
        w.write("t", t.t())
    assert torch.equal(st.load_file(path)["t"], t.t().contiguous())


def test_writer_errors(tmp_path):
    p = str(tmp_path / "w.safetensors")
    decl = [("a", "F32", (2,)), ("b", "F32", (3,)), ("c", "I8", (1,))]
    # wrong order
    w = SafetensorsWriter(p, decl)
    with pytest.raises(SmfaError, match=r"w\.safetensors.*'b'.*'a' is incomplete"):
        w.write("b", torch.zeros(3))
    w.write("a", torch.zeros(1))
    with pytest.raises(SmfaError, match="'a' is incomplete"):
        w.write("c", torch.zeros(1, dtype=torch.int8))
    w.write("a", torch.zeros(1))
    w.write("b", torch.zeros(3))
    with pytest.raises(SmfaError, match="'a' was already written"):
        w.write("a", torch.zeros(1))
    # too many bytes
    with pytest.raises(SmfaError, match="too many bytes for tensor 'c'"):
        w.write("c", torch.zeros(2, dtype=torch.int8))
    # dtype mismatch and undeclared
    with pytest.raises(SmfaError, match="declared I8"):
        w.write("c", torch.zeros(1))
    with pytest.raises(SmfaError, match="'zzz' was not declared"):
        w.write("zzz", b"x")
    # too few bytes at close names the tensor
    with pytest.raises(SmfaError, match=r"w\.safetensors.*'c' is incomplete"):
        w.close()
    with pytest.raises(SmfaError, match="closed"):
        w.write("c", b"\0")
    w.close()  # already closed: no-op
    # too many bytes for the last tensor
    with SafetensorsWriter(p, [("x", "U8", (2,))]) as w2:
        with pytest.raises(SmfaError, match="too many bytes for tensor 'x'"):
            w2.write("x", b"abc")
        w2.write("x", b"ab")
    # nothing written at all
    with pytest.raises(SmfaError, match="'x' is incomplete: 0 of 8"):
        with SafetensorsWriter(p, [("x", "F64", (1,))]):
            pass
    # context exit on an exception does not mask it
    with pytest.raises(KeyError):
        with SafetensorsWriter(p, [("x", "F64", (1,))]):
            raise KeyError("boom")
    # declaration errors
    with pytest.raises(SmfaError, match="twice"):
        SafetensorsWriter(p, [("x", "F32", (1,)), ("x", "F32", (1,))])
    with pytest.raises(SmfaError, match="__metadata__"):
        SafetensorsWriter(p, [("__metadata__", "F32", (1,))])
    with pytest.raises(SmfaError, match="dtype"):
        SafetensorsWriter(p, [("x", "F17", (1,))])
    with pytest.raises(SmfaError, match="shape"):
        SafetensorsWriter(p, [("x", "F32", (-1,))])
    with pytest.raises(SmfaError, match="metadata"):
        SafetensorsWriter(p, [], metadata={"a": 1})
    with pytest.raises(SmfaError, match="nodir"):
        SafetensorsWriter(tmp_path / "nodir" / "x.safetensors", [])


def test_writer_empty_file_and_metadata_override(tmp_path):
    p = str(tmp_path / "e.safetensors")
    with SafetensorsWriter(p, [], metadata={"format": "pt", "a": "b"}):
        pass
    assert st.load_file(p) == {}
    with SafetensorsReader(p) as r:
        assert r.metadata == {"format": "pt", "a": "b"} and r.tensors == {}


# --------------------------------------------------------------------------------------------
# malformed files


