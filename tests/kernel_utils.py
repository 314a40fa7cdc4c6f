"""Shared helpers for kernel tests (cpu, cuda, triton backends against `reference`).

- `assert_bits_equal` / `assert_close`: verbose assertions that name the first bad indices
  with both values (and their bit patterns), like Liger-Kernel's test/utils.py.
- `make_inputs(dtype, n, kind, seed)`: deterministic edge-value generators; every kind
  returns (f, a) deltas of `n` elements. `make_pair` splits a delta into (x, x_base).
- `KINDS`, `DTYPES`, `ODD_SIZES`, `T_VALUES`: the grids every backend's tests share.

Nothing here imports a backend; tensors are made on CPU and can be moved with `.to(device)`.
"""

from __future__ import annotations

import contextlib
import functools

import torch

DTYPES = (torch.bfloat16, torch.float16, torch.float32)
ODD_SIZES = (1, 7, 255, 257, 65535, 65536, 65537, 3 * 65536 + 13)
T_VALUES = (0.0, 1.0, 0.37, 1e30)
MODES = (0, 1, 2, 3)

_INT_VIEW = {
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}


@contextlib.contextmanager
def torch_threads(n: int):
    """Run torch's CPU ops with n intra-op threads (restored after). On a small shared
    machine, the many small ops of the reference run much faster on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_threaded(fn):
    """Decorator: call fn under torch_threads(1)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch_threads(1):
            return fn(*args, **kwargs)

    return wrapper


def bits(x: torch.Tensor) -> torch.Tensor:
    """Integer view of a float tensor's bits (other dtypes are returned as they are)."""
    view = _INT_VIEW.get(x.dtype)
    return x.view(view) if view is not None else x


def f32_exact(t: float) -> float:
    """The fp32 value nearest to t, as a Python float (what kernels receive as `t`)."""
    return float(torch.tensor(t, dtype=torch.float64).to(torch.float32))


def _fmt(x: torch.Tensor, i: int) -> str:
    v = x[i].item()
    if x.dtype in _INT_VIEW:
        width = x.element_size() * 2
        b = bits(x)[i].item() & ((1 << (8 * x.element_size())) - 1)
        return f"{v!r} (0x{b:0{width}x})"
    return repr(v)


def _report(name: str, actual: torch.Tensor, expected: torch.Tensor, bad: torch.Tensor,
            max_show: int) -> str:
    idx = bad.nonzero().flatten()
    nbad = idx.numel()
    lines = [f"{name}: {nbad} of {bad.numel()} elements differ "
             f"(dtype {actual.dtype}, shape {tuple(actual.shape)}); first {min(nbad, max_show)}:"]
    a, e = actual.reshape(-1), expected.reshape(-1)
    for i in idx[:max_show].tolist():
        lines.append(f"  [{i}] actual {_fmt(a, i)}  expected {_fmt(e, i)}")
    return "\n".join(lines)


def assert_bits_equal(actual: torch.Tensor, expected: torch.Tensor, name: str = "tensor",
                      max_show: int = 10) -> None:
    """Bit-for-bit equality (so -0.0 != +0.0 and NaN payloads count); names the first bad indices."""
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != expected {expected.dtype}"
    assert actual.shape == expected.shape, (
        f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    a, e = actual.detach().cpu().contiguous(), expected.detach().cpu().contiguous()
    if torch.equal(bits(a), bits(e)):
        return
    bad = bits(a).reshape(-1) != bits(e).reshape(-1)
    raise AssertionError(_report(name, a, e, bad, max_show))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5,
                 name: str = "tensor", max_show: int = 10) -> None:
    """allclose (NaN equal to NaN) with a report of the first indices out of tolerance."""
    assert actual.shape == expected.shape, (
        f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    a = actual.detach().cpu().to(torch.float64).reshape(-1)
    e = expected.detach().cpu().to(torch.float64).reshape(-1)
    ok = torch.isclose(a, e, atol=atol, rtol=rtol, equal_nan=True)
    if bool(ok.all()):
        return
    raise AssertionError(_report(f"{name} (atol={atol}, rtol={rtol})", actual.detach().cpu().reshape(-1),
                                 expected.detach().cpu().reshape(-1), ~ok, max_show))


# ------------------------------------------------------------------ input generators

def _tiny(dtype: torch.dtype) -> float:
    """A value whose product with another of its kind underflows in fp32 (or subnormal)."""
    if dtype == torch.float32:
        return 1e-30
    return torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps  # smallest subnormal


def _cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.to(dtype).contiguous()


def _kind_random(g: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    f = torch.randn(n, generator=g) * 0.02
    a = torch.randn(n, generator=g) * 0.01
    return f, a


def _kind_zeros(g, n):  # +0.0 and -0.0 on both sides, mixed with small values
    sel = torch.randint(0, 4, (2, n), generator=g)
    vals = torch.tensor([0.0, -0.0, 0.5, -0.25])
    return vals[sel[0]], vals[sel[1]]


def _kind_opposite(g, n):  # a = -f exactly: every nonzero entry conflicts; R depends on t only
    f = torch.randn(n, generator=g)
    return f, -f


def _kind_zero_anchor(g, n):  # nothing conflicts; magnitude mode masks every f != 0 (t*0 < |f|)
    f = torch.randn(n, generator=g)
    f[torch.rand(n, generator=g) < 0.1] = 0.0
    return f, torch.zeros(n)


def _kind_equal_magnitude(g, n):  # |f| == |a| exactly: R is a strict compare, t=1 masks nothing
    f = torch.randn(n, generator=g)
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    return f, f.abs() * sign


@single_threaded
def make_inputs(dtype: torch.dtype, n: int, kind: str = "random", seed: int = 0,
                a_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(f, a): two contiguous 1-D deltas of n elements, f in `dtype`, a in `a_dtype` (default
    the same). Kinds: see KINDS. Values are chosen in fp32 then rounded to the dtype, so every
    backend sees the same stored bits."""
    a_dtype = a_dtype or dtype
    g = torch.Generator().manual_seed(seed * 7919 + n)
    if kind == "tiny":  # products (t*|a|, f*a) underflow; smallest subnormals of the dtype
        tf, ta = _tiny(dtype), _tiny(a_dtype)
        sf = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        sa = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        mf = torch.randint(1, 4, (n,), generator=g).float()
        ma = torch.randint(1, 4, (n,), generator=g).float()
        f, a = sf * mf * tf, sa * ma * ta
        return _cast(f, dtype), _cast(a, a_dtype)
    if kind == "huge":  # close to the dtype's max: t*|a| overflows to inf for t > 1
        mf, ma = torch.finfo(dtype).max, torch.finfo(a_dtype).max
        f = torch.empty(n).uniform_(0.25, 1.0, generator=g) * mf
        a = torch.empty(n).uniform_(0.25, 1.0, generator=g) * ma
        f = f * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        a = a * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        return _cast(f, dtype), _cast(a, a_dtype)
    if kind == "mixed":  # all edge kinds interleaved element by element
        parts = [make_inputs(dtype, n, k, seed, a_dtype) for k in KINDS if k != "mixed"]
        pick = torch.randint(0, len(parts), (n,), generator=g)
        f = torch.stack([p[0].float() for p in parts])[pick, torch.arange(n)]
        a = torch.stack([p[1].float() for p in parts])[pick, torch.arange(n)]
        return _cast(f, dtype), _cast(a, a_dtype)
    fn = _GENERATORS[kind]
    f, a = fn(g, n)
    return _cast(f, dtype), _cast(a, a_dtype)


_GENERATORS = {
    "random": _kind_random,
    "zeros": _kind_zeros,
    "opposite": _kind_opposite,
    "zero_anchor": _kind_zero_anchor,
    "equal_magnitude": _kind_equal_magnitude,
}
KINDS = ("random", "zeros", "opposite", "zero_anchor", "equal_magnitude", "tiny", "huge", "mixed")


@single_threaded
def make_pair(x: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a delta into (checkpoint, base) of x's dtype; float(ckpt) - float(base) is the
    delta the kernels see (it equals x only up to one fp32 rounding, which is the point)."""
    g = torch.Generator().manual_seed(seed + 104729)
    base = (torch.randn(x.numel(), generator=g) * 0.05).to(x.dtype)
    if x.dtype != torch.float32:  # keep the sum in range for the narrow types
        ckpt = (x.float() + base.float()).clamp(-torch.finfo(x.dtype).max, torch.finfo(x.dtype).max)
    else:
        ckpt = x + base
    return ckpt.to(x.dtype).contiguous(), base.contiguous()


@single_threaded
def make_weight(dtype: torch.dtype, n: int, seed: int = 0) -> torch.Tensor:
    """A base weight W_o to merge into (values of typical weight scale, some exact zeros)."""
    g = torch.Generator().manual_seed(seed + 1299709)
    w = torch.randn(n, generator=g) * 0.05
    w[torch.rand(n, generator=g) < 0.05] = 0.0
    return w.to(dtype).contiguous()


@single_threaded
def order_sensitive(dtype: torch.dtype, n: int, seed: int = 7) -> torch.Tensor:
    """Values whose fp64 sum of squares depends on the order of each lane's rows. Every lane
    of a block holds one big value B at a random row k < 100, small values s elsewhere, with
    s^2 under a quarter of an ulp of B^2: smalls added after B vanish, smalls added before it
    survive, so any other row order (e.g. reversed: B at 255 - k) gives other bits. (With
    random narrow values, 16-bit squares sum exactly in any order and a wrong reduction
    order would pass unseen.) Signs and B's mantissa are random."""
    from smfa_core._ops import BLOCK, LANES

    eb, es = (7, -20) if dtype == torch.float16 else (20, -7)  # 2*es <= 2*eb - 54
    g = torch.Generator().manual_seed(seed)
    x = torch.full((n,), 2.0**es)
    rows = BLOCK // LANES
    idx = torch.arange(n)
    block, within = idx // BLOCK, idx % BLOCK
    k = torch.randint(0, 100, ((n + BLOCK - 1) // BLOCK, LANES), generator=g)
    big = (within // LANES) == k[block, within % LANES]
    mant = 1.0 + torch.randint(0, 8, (n,), generator=g).float() / 8
    x = torch.where(big, mant * 2.0**eb, x)
    x = x * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    assert rows > 100
    return x.to(dtype)


def rows_reversed(x: torch.Tensor, block: int = 65536, lanes: int = 256) -> torch.Tensor:
    """x with the rows of each full block in reverse order (each lane's terms reversed)."""
    out = x.clone()
    full = x.numel() // block * block
    out[:full] = x[:full].view(-1, block // lanes, lanes).flip(1).reshape(-1)
    return out


def tree_sensitive(dtype: torch.dtype, n: int = 65536 + 3) -> tuple[torch.Tensor, float]:
    """(x, the exact first block sum) where only the canonical halving tree gives that sum:
    lane 0 holds 6 (square 36), lanes 1 and 129 hold 2^-24 (square: half an ulp of 36).
    The tree adds lanes 1 and 129 first (one ulp), then 36 + ulp is exact; adding either
    half-ulp to 36 first (adjacent pairs, a sequential sum) rounds back to 36. Every dtype
    holds these values exactly (2^-24 is fp16's smallest subnormal)."""
    x = torch.zeros(n, dtype=torch.float32)
    x[0], x[1], x[129] = 6.0, 2.0**-24, -(2.0**-24)
    return x.to(dtype), 36.0 + 2.0**-47

