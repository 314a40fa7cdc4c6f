"""smfa_core.safetensors_io.format: the dtype tables and strict validation of malformed
files (each error names the file and the tensor or field; fuzzed headers raise only SmfaError)."""

from __future__ import annotations

import json
import random
import struct

import pytest
import safetensors.torch as st
import torch
from safetensors_utils import raw_file, same, valid_header

from smfa_core.errors import SmfaError
from smfa_core.safetensors_io import (
    DTYPES,
    MAX_HEADER_SIZE,
    SafetensorsReader,
    TensorInfo,
    dtype_name,
    itemsize,
)


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


def _malformed_cases(tmp_path):
    header, data = valid_header()

    def mod(**changes):
        h = json.loads(json.dumps(header))
        for key, val in changes.items():
            name, field = key.split("__")
            h[name][field] = val
        return h

    cases = {
        "short": lambda p: open(p, "wb").write(b"\x01\x00\x00"),
        "empty": lambda p: open(p, "wb").close(),
        "huge_header_len": lambda p: raw_file(p, header, data, n=MAX_HEADER_SIZE + 1),
        "header_len_past_eof": lambda p: raw_file(p, json.dumps(header).encode(), data, n=10_000),
        "header_len_u64max": lambda p: raw_file(p, b"{}", b"", n=2**64 - 1),
        "truncated": lambda p: raw_file(p, header, data[:-3]),
        "truncated_header": lambda p: open(p, "wb").write(struct.pack("<Q", 200) + b'{"a":'),
        "non_utf8": lambda p: raw_file(p, b'{"a\xff\xfe":{}}'),
        "not_json": lambda p: raw_file(p, b"{this is not json}"),
        "json_array": lambda p: raw_file(p, b"[1, 2, 3]"),
        "json_string": lambda p: raw_file(p, b'"abc"'),
        "zero_header": lambda p: raw_file(p, b""),
        "bad_dtype": lambda p: raw_file(p, mod(a__dtype="F128"), data),
        "dtype_not_str": lambda p: raw_file(p, mod(a__dtype=4), data),
        "negative_shape": lambda p: raw_file(p, mod(a__shape=[-2, -2]), data),
        "float_shape": lambda p: raw_file(p, mod(a__shape=[2.0, 2]), data),
        "bool_shape": lambda p: raw_file(p, mod(b__shape=[True, 3]), data),
        "shape_not_list": lambda p: raw_file(p, mod(a__shape=4), data),
        "huge_shape": lambda p: raw_file(p, mod(a__shape=[10**30, 10**30]), data),
        "many_dims": lambda p: raw_file(p, mod(a__shape=[2**40] * 1000), data),
        "overlap": lambda p: raw_file(p, mod(b__data_offsets=[14, 20]), data),
        "gap": lambda p: raw_file(p, mod(b__data_offsets=[18, 24]), data + b"xx"),
        "not_at_zero": lambda p: raw_file(
            p, mod(a__data_offsets=[2, 18], b__data_offsets=[18, 24]), data + b"xx"
        ),
        "size_mismatch": lambda p: raw_file(p, mod(a__shape=[2, 3]), data),
        "offsets_reversed": lambda p: raw_file(p, mod(b__data_offsets=[22, 16]), data),
        "offsets_negative": lambda p: raw_file(p, mod(a__data_offsets=[-16, 0]), data),
        "offsets_three": lambda p: raw_file(p, mod(a__data_offsets=[0, 8, 16]), data),
        "offsets_float": lambda p: raw_file(p, mod(a__data_offsets=[0.0, 16]), data),
        "offsets_past_eof": lambda p: raw_file(p, mod(b__data_offsets=[16, 10**20]), data),
        "missing_field": lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [4]}}, data[:16]),
        "entry_not_object": lambda p: raw_file(p, {"a": [1, 2]}, b""),
        "trailing_bytes": lambda p: raw_file(p, header, data + b"\0"),
        "metadata_not_dict": lambda p: raw_file(p, {**header, "__metadata__": ["a"]}, data),
        "metadata_value_int": lambda p: raw_file(p, {**header, "__metadata__": {"a": 1}}, data),
        "metadata_value_null": lambda p: raw_file(p, {**header, "__metadata__": {"a": None}}, data),
        "metadata_nested": lambda p: raw_file(p, {**header, "__metadata__": {"a": {"b": "c"}}}, data),
        "duplicate_key": lambda p: raw_file(
            p,
            b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
            b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
            b"xy",
        ),
        "nan_literal": lambda p: raw_file(p, b'{"__metadata__":{"a":NaN}}'),
        "huge_int_literal": lambda p: raw_file(p, b'{"a":{"dtype":"U8","shape":[' + b"9" * 5000 + b"]}}"),
        "deep_nesting": lambda p: raw_file(p, b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
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
    p1 = raw_file(tmp_path / "e1.safetensors", b"{}")
    p2 = raw_file(tmp_path / "e2.safetensors", b' \n{"__metadata__":{"a":"b"}}    ')
    p3 = raw_file(
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
                    assert official is not None and same(t, official[name]), (i, name)
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


