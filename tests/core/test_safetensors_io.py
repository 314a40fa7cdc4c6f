"""smfa_core.safetensors_io: round trips with the official library and transformers, strict
validation of malformed files, chunked reads/writes, sharded checkpoints."""

from __future__ import annotations

import json
import os
import random
import struct

import pytest
import safetensors
import safetensors.torch as st
import torch

from smfa_core.errors import SmfaError
from smfa_core.safetensors_io import (
    DTYPES,
    MAX_HEADER_SIZE,
    Checkpoint,
    SafetensorsReader,
    SafetensorsWriter,
    TensorInfo,
    dtype_name,
    itemsize,
    write_index,
)

# --------------------------------------------------------------------------------------------
# helpers


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a tensor (bit-exact comparison, NaN-safe, works for every dtype)."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape) and torch.equal(_bits(a), _bits(b))


def _random(dtype: torch.dtype, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    n = 1
    for d in shape:
        n *= d
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    isz = torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (n * isz,), dtype=torch.uint8, generator=gen)
    return raw.view(dtype).reshape(shape)


def _official_types() -> dict[str, torch.dtype]:
    """The dtypes that both we and the installed safetensors.torch can store."""
    names = getattr(st, "_TYPES", {})
    return {k: v for k, v in DTYPES.items() if k in names}


SHAPES = [(), (0,), (3, 0, 2), (7,), (5, 3), (2, 3, 4)]


def _raw_file(path, header, data: bytes = b"", *, n: int | None = None) -> str:
    """Write a safetensors file by hand. ``header`` is a dict or raw bytes."""
    hb = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb) if n is None else n) + hb + data)
    return str(path)


def _valid_header() -> tuple[dict, bytes]:
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
    }
    return header, bytes(range(22))


# --------------------------------------------------------------------------------------------
# dtypes


def test_dtype_tables():
    for name in ("F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "U16", "U32", "U64"):
        assert name in DTYPES
        assert dtype_name(DTYPES[name]) == name
        assert itemsize(name) == torch.empty((), dtype=DTYPES[name]).element_size()
    assert DTYPES["F8_E4M3"] == torch.float8_e4m3fn and DTYPES["F8_E5M2"] == torch.float8_e5m2
    assert itemsize("BF16") == 2 and itemsize("F8_E4M3") == 1 and itemsize("BOOL") == 1
    with pytest.raises(SmfaError):
        itemsize("F4")
    with pytest.raises(SmfaError):
        dtype_name(torch.complex128)
    ti = TensorInfo("w", "BF16", (3, 4), 100, 124, "/x.safetensors")
    assert ti.numel == 12 and ti.nbytes == 24 and ti.torch_dtype == torch.bfloat16 and ti.itemsize == 2
    assert TensorInfo("s", "F32", (), 0, 4, "p").numel == 1


# --------------------------------------------------------------------------------------------
# reading files written by the official library


def test_read_official_all_dtypes_bit_exact(tmp_path):
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for name, dt in _official_types().items():
        for i, shape in enumerate(SHAPES):
            tensors[f"{name}.{i}"] = _random(dt, shape, gen)
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
            assert _same(got, t), name
            # read_into a reused byte buffer returns a flat view with the right dtype
            buf = torch.empty(ti.nbytes + 5, dtype=torch.uint8)
            flat = r.read_into(name, buf)
            assert flat.dtype == t.dtype and flat.shape == (t.numel(),)
            assert t.numel() == 0 or flat.data_ptr() == buf.data_ptr()
            assert torch.equal(_bits(flat), _bits(t))


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
                assert torch.equal(_bits(got), _bits(flat[a:z]))
            # sequential chunks cover the tensor exactly
            parts = []
            for a in range(0, n, 97):
                parts.append(r.read_into(name, buf, a, min(n, a + 97)).clone())
            assert torch.equal(_bits(torch.cat(parts)), _bits(flat))
            # into a tensor of the tensor's own dtype (2-D, contiguous)
            out = torch.empty(n + 3, dtype=t.dtype)
            assert r.read_into(name, out, 1, 4).data_ptr() == out.data_ptr()
            # bytes
            bb = r.read_bytes_into(name, buf, 3, 11)
            assert bytes(bb.tolist()) == bytes(_bits(t)[3:11].tolist())
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
    for name, dt in _official_types().items():
        for i, shape in enumerate(SHAPES):
            tensors[f"{name}.{i}"] = _random(dt, shape, gen)
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
        assert _same(loaded[k], v), k
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
        raw = bytes(_bits(c).tolist())
        w.write("c", raw[:100])
        w.write("c", memoryview(raw)[100:900])
        w.write("c", b"")
        w.write("c", _bits(c)[900:])
    loaded = st.load_file(path)
    assert _same(loaded["a"], a) and _same(loaded["b"], b) and _same(loaded["c"], c)


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


def _malformed_cases(tmp_path):
    header, data = _valid_header()

    def mod(**changes):
        h = json.loads(json.dumps(header))
        for key, val in changes.items():
            name, field = key.split("__")
            h[name][field] = val
        return h

    cases = {
        "short": lambda p: open(p, "wb").write(b"\x01\x00\x00"),
        "empty": lambda p: open(p, "wb").close(),
        "huge_header_len": lambda p: _raw_file(p, header, data, n=MAX_HEADER_SIZE + 1),
        "header_len_past_eof": lambda p: _raw_file(p, json.dumps(header).encode(), data, n=10_000),
        "header_len_u64max": lambda p: _raw_file(p, b"{}", b"", n=2**64 - 1),
        "truncated": lambda p: _raw_file(p, header, data[:-3]),
        "truncated_header": lambda p: open(p, "wb").write(struct.pack("<Q", 200) + b'{"a":'),
        "non_utf8": lambda p: _raw_file(p, b'{"a\xff\xfe":{}}'),
        "not_json": lambda p: _raw_file(p, b"{this is not json}"),
        "json_array": lambda p: _raw_file(p, b"[1, 2, 3]"),
        "json_string": lambda p: _raw_file(p, b'"abc"'),
        "zero_header": lambda p: _raw_file(p, b""),
        "bad_dtype": lambda p: _raw_file(p, mod(a__dtype="F128"), data),
        "dtype_not_str": lambda p: _raw_file(p, mod(a__dtype=4), data),
        "negative_shape": lambda p: _raw_file(p, mod(a__shape=[-2, -2]), data),
        "float_shape": lambda p: _raw_file(p, mod(a__shape=[2.0, 2]), data),
        "bool_shape": lambda p: _raw_file(p, mod(b__shape=[True, 3]), data),
        "shape_not_list": lambda p: _raw_file(p, mod(a__shape=4), data),
        "huge_shape": lambda p: _raw_file(p, mod(a__shape=[10**30, 10**30]), data),
        "many_dims": lambda p: _raw_file(p, mod(a__shape=[2**40] * 1000), data),
        "overlap": lambda p: _raw_file(p, mod(b__data_offsets=[14, 20]), data),
        "gap": lambda p: _raw_file(p, mod(b__data_offsets=[18, 24]), data + b"xx"),
        "not_at_zero": lambda p: _raw_file(
            p, mod(a__data_offsets=[2, 18], b__data_offsets=[18, 24]), data + b"xx"
        ),
        "size_mismatch": lambda p: _raw_file(p, mod(a__shape=[2, 3]), data),
        "offsets_reversed": lambda p: _raw_file(p, mod(b__data_offsets=[22, 16]), data),
        "offsets_negative": lambda p: _raw_file(p, mod(a__data_offsets=[-16, 0]), data),
        "offsets_three": lambda p: _raw_file(p, mod(a__data_offsets=[0, 8, 16]), data),
        "offsets_float": lambda p: _raw_file(p, mod(a__data_offsets=[0.0, 16]), data),
        "offsets_past_eof": lambda p: _raw_file(p, mod(b__data_offsets=[16, 10**20]), data),
        "missing_field": lambda p: _raw_file(p, {"a": {"dtype": "F32", "shape": [4]}}, data[:16]),
        "entry_not_object": lambda p: _raw_file(p, {"a": [1, 2]}, b""),
        "trailing_bytes": lambda p: _raw_file(p, header, data + b"\0"),
        "metadata_not_dict": lambda p: _raw_file(p, {**header, "__metadata__": ["a"]}, data),
        "metadata_value_int": lambda p: _raw_file(p, {**header, "__metadata__": {"a": 1}}, data),
        "metadata_value_null": lambda p: _raw_file(p, {**header, "__metadata__": {"a": None}}, data),
        "metadata_nested": lambda p: _raw_file(p, {**header, "__metadata__": {"a": {"b": "c"}}}, data),
        "duplicate_key": lambda p: _raw_file(
            p,
            b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
            b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
            b"xy",
        ),
        "nan_literal": lambda p: _raw_file(p, b'{"__metadata__":{"a":NaN}}'),
        "huge_int_literal": lambda p: _raw_file(p, b'{"a":{"dtype":"U8","shape":[' + b"9" * 5000 + b"]}}"),
        "deep_nesting": lambda p: _raw_file(p, b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    }
    return cases


# Cases where we are deliberately stricter than the official library (it accepts them): none so far.
_STRICTER: set[str] = set()


def test_malformed_files_name_the_file(tmp_path):
    for case, make in _malformed_cases(tmp_path).items():
        path = str(tmp_path / f"bad-{case}.safetensors")
        make(path)
        with pytest.raises(SmfaError) as ei:
            SafetensorsReader(path)
        msg = str(ei.value)
        assert path in msg, (case, msg)
        if case not in _STRICTER:
            with pytest.raises(Exception):  # noqa: B017 - the official library rejects it too
                st.load_file(path)


def test_malformed_messages_name_the_tensor_or_field(tmp_path):
    cases = _malformed_cases(tmp_path)
    expect = {
        "bad_dtype": "'a'",
        "negative_shape": "'a'",
        "float_shape": "'a'",
        "overlap": "'b'",
        "gap": "'b'",
        "not_at_zero": "'a'",
        "size_mismatch": "'a'",
        "offsets_reversed": "'b'",
        "missing_field": "'data_offsets'",
        "metadata_value_int": "__metadata__",
        "metadata_not_dict": "__metadata__",
        "trailing_bytes": "trailing",
        "huge_header_len": "header length",
        "short": "shorter",
        "non_utf8": "UTF-8",
        "json_array": "object",
    }
    for case, frag in expect.items():
        path = str(tmp_path / f"bad2-{case}.safetensors")
        cases[case](path)
        with pytest.raises(SmfaError) as ei:
            SafetensorsReader(path)
        assert frag in str(ei.value), (case, str(ei.value))


def test_valid_edge_cases_accepted(tmp_path):
    # no tensors at all; metadata only; zero-size tensors sharing an offset; header padding
    p1 = _raw_file(tmp_path / "e1.safetensors", b"{}")
    p2 = _raw_file(tmp_path / "e2.safetensors", b' \n{"__metadata__":{"a":"b"}}    ')
    p3 = _raw_file(
        tmp_path / "e3.safetensors",
        {
            "z1": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
            "x": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
            "z2": {"dtype": "BF16", "shape": [4, 0], "data_offsets": [2, 2]},
        },
        b"hi",
    )
    for p in (p1, p2, p3):
        st.load_file(p)  # the official library agrees these are valid
        with SafetensorsReader(p) as r:
            for name in r.tensors:
                r.read(name)
    with SafetensorsReader(p3) as r:
        assert list(r.tensors) == ["z1", "x", "z2"]
        assert r.read("z2").shape == (4, 0)


def test_fuzz_only_smfa_errors(tmp_path):
    gen = torch.Generator().manual_seed(7)
    tensors = {
        "w": torch.randn(4, 3, generator=gen).to(torch.bfloat16),
        "b": torch.randn(3, generator=gen),
        "s": torch.tensor(3, dtype=torch.int64),
        "m": torch.tensor([True, False]),
        "z": torch.zeros(0, 2),
    }
    base = tmp_path / "base.safetensors"
    st.save_file(tensors, str(base), metadata={"k": "v"})
    good = base.read_bytes()
    (hn,) = struct.unpack("<Q", good[:8])
    rng = random.Random(1234)
    buf = torch.empty(4096, dtype=torch.uint8)
    outcomes = {"ok": 0, "err": 0}
    disagree = 0
    path = str(tmp_path / "fuzz.safetensors")
    for i in range(400):
        b = bytearray(good)
        op = i % 5
        if op == 0:  # flip bytes in the header (length or JSON)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(0, 8 + hn)] ^= 1 << rng.randrange(8)
        elif op == 1:  # random byte values anywhere
            for _ in range(rng.randint(1, 6)):
                b[rng.randrange(0, len(b))] = rng.randrange(256)
        elif op == 2:  # truncate
            b = b[: rng.randrange(0, len(b))]
        elif op == 3:  # extend
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:  # replace a header character with a JSON-significant one
            pos = rng.randrange(8, 8 + hn)
            b[pos] = ord(rng.choice('{}[]",:0123456789- e'))
        with open(path, "wb") as f:
            f.write(b)
        try:
            official = st.load_file(path)
        except Exception:
            official = None
        try:
            with SafetensorsReader(path) as r:
                for name, ti in r.tensors.items():
                    t = r.read(name)
                    assert t.numel() == ti.numel
                    if ti.nbytes <= buf.numel():
                        r.read_into(name, buf, 0, ti.numel)
                    # whatever we accept, the official library reads identically
                    assert official is not None and _same(t, official[name]), (i, name)
            assert official is not None and set(official) == set(r.tensors), i
            outcomes["ok"] += 1
        except SmfaError as e:
            assert path in str(e)
            outcomes["err"] += 1
            disagree += official is not None
    assert outcomes["ok"] > 0 and outcomes["err"] > 100, outcomes
    assert disagree == 0, f"{disagree} files the official library accepts were rejected"


# --------------------------------------------------------------------------------------------
# checkpoints


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
            assert _same(ck.read(n), t)
            buf = torch.empty(100, dtype=torch.uint8)
            assert torch.equal(_bits(ck.read_into(n, buf, 1, 3)), _bits(t.reshape(-1)[1:3]))
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
        assert _same(ck.read("b"), t["b"])
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
        assert _same(lsd[k], v), k

    # and the other way: a checkpoint sharded by save_pretrained reads back identically
    theirs = tmp_path / "theirs"
    model.save_pretrained(str(theirs), max_shard_size="20KB")
    with Checkpoint(theirs) as ck:
        assert len(ck.files) > 1
        assert set(ck.names()) == set(sd)
        for k, v in sd.items():
            assert _same(ck.read(k), v), k
