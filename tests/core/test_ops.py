"""The op set as torch custom ops: schemas, fake (meta) impls and mutation annotations agree
with the kernels (torch.library.opcheck: schema, autograd registration, fake tensors, and the
AOT/torch.compile dispatch path), for the C++ ops (smfa::) and the Triton ops (smfa_triton::,
through the interpreter when there is no GPU)."""

from __future__ import annotations

import pytest
import torch

import smfa_core
from smfa_core import _ops
from smfa_core.backends import get_backend


def _cases(device: str):
    g = torch.Generator().manual_seed(0)
    n = 1000
    for dt in (torch.bfloat16, torch.float32):
        f, a, w = (torch.randn(n, generator=g).to(dt).to(device) for _ in range(3))
        fb = torch.randn(n, generator=g).to(dt).to(device)
        out = torch.empty(n, dtype=dt, device=device)
        mask = torch.empty((n + 7) // 8, dtype=torch.uint8, device=device)
        yield "sumsq_blocks", (f, None)
        yield "sumsq_blocks", (f, fb)
        yield "sculpt_chunk", (f, fb, a, None, 0.5, 3, w, out, mask)
        yield "sculpt_chunk", (f, None, a, None, 1.0, 1, None, out, None)
        yield "sweep_counts", (f, None, a, fb, torch.tensor([0.5, 1.0], device=device))


def _namespaces():
    params = []
    ok = smfa_core.available_backends()
    if ok["cpu"].startswith("ok"):
        params.append(pytest.param(("smfa", "cpu"), id="smfa-cpu"))
    if ok["cuda"].startswith("ok"):
        params.append(pytest.param(("smfa", "cuda"), id="smfa-cuda"))
    tdev = "cuda" if torch.cuda.is_available() else "cpu"
    marks = () if ok["triton"].startswith("ok") else (pytest.mark.skip(reason=f"triton: {ok['triton']}"),)
    params.append(pytest.param(("smfa_triton", tdev), id=f"smfa_triton-{tdev}", marks=marks))
    return params


@pytest.mark.parametrize("ns_dev", _namespaces())
def test_opcheck(ns_dev):
    ns, device = ns_dev
    if ns == "smfa_triton":
        get_backend("triton", device).sumsq_blocks(torch.zeros(1, device=device))  # registers the ops
    for name, args in _cases(device):
        op = getattr(getattr(torch.ops, ns), name).default
        res = torch.library.opcheck(op, args)
        assert all(v == "SUCCESS" for v in res.values()), (ns, name, res)


def test_one_schema_per_op_in_every_namespace():
    torch.ops.smfa_triton  # noqa: B018  (namespace object; ops appear once registered)
    for name, schema in _ops.SCHEMAS.items():
        assert str(getattr(torch.ops.smfa, name).default._schema) == "smfa::" + schema
    assert "mode" not in _ops.SCHEMAS["sculpt_chunk"].replace("mask_mode", "")  # see _ops.SCHEMAS
