"""Triton kernels of the smfa op set (imported lazily by backends/triton.py).

Same bits as backends/reference.py. Notes on how the bits are kept:
- bf16 tensors travel as int16 views and are widened/rounded by bit manipulation, so the
  result never depends on the interpreter's or the compiler's bf16 conversion; fp16 uses
  the round-to-nearest-even cast and fixes NaN bits the way torch's CPU cast writes them.
- the norms kernel is the canonical reduction itself: one program per BLOCK elements,
  fp64 lane accumulators over [LANES]-wide rows in row order, then the halving tree as
  explicit pairwise adds (reshape/permute/split, never tl.sum over more than a pair).
- every fp32 operation is a single op (sub, mul, add); a multiply never feeds an add, so
  FMA contraction cannot change a result (norms: the fp64 square of an fp32 is exact).

TRITON_INTERPRET must be set before this module is imported (read at @triton.jit time).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._ops import BLOCK, LANES

# dtype codes shared with csrc/cuda/sculpt_cuda.h
KIND = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}

# bits torch's CPU cast writes for a NaN (measured with torch 2.13 CPU, see the tests):
# bf16 -> 0xFFFF whatever the payload; fp16 -> sign | 0x7E00 | (fp32 mantissa >> 13).
BF16_NAN_BITS = -1  # 0xFFFF as int16


@triton.jit
def _load_f32(ptr, offs, inb, K: tl.constexpr):
    if K == 2:  # bf16 as int16 bits: widen exactly
        u = tl.load(ptr + offs, mask=inb, other=0).to(tl.int32)
        v = (u << 16).to(tl.float32, bitcast=True)
    else:
        v = tl.load(ptr + offs, mask=inb, other=0).to(tl.float32)
    return v


@triton.jit
def _delta(x_ptr, xb_ptr, offs, inb, KX: tl.constexpr, KB: tl.constexpr, HAS_BASE: tl.constexpr):
    x = _load_f32(x_ptr, offs, inb, KX)
    if HAS_BASE:
        x = x - _load_f32(xb_ptr, offs, inb, KB)
    return x


@triton.jit
def _store_out(ptr, offs, v, inb, K: tl.constexpr):
    if K == 0:
        tl.store(ptr + offs, v, mask=inb)
    else:
        u = v.to(tl.int32, bitcast=True)
        isnan = v != v
        if K == 2:  # fp32 -> bf16, round to nearest even
            r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16  # arithmetic shift: low 16 bits are right
            bits = tl.where(isnan, -1, r)
        else:  # fp32 -> fp16, round to nearest even (IEEE cast), torch's NaN bits
            h = v.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32)
            nan_bits = ((u >> 16) & 0x8000) | 0x7E00 | ((u >> 13) & 0x3FF)
            bits = tl.where(isnan, nan_bits, h)
        tl.store(ptr + offs, bits.to(tl.int16), mask=inb)


@triton.jit
def _pair_sum(x, HALF: tl.constexpr):
    # [2*HALF] -> [HALF]: element l + element l + HALF, one fp add per pair
    lo, hi = tl.split(tl.permute(tl.reshape(x, (2, HALF)), (1, 0)))
    return lo + hi


@triton.jit
def _sumsq_kernel(x_ptr, xb_ptr, out_ptr, n,
                  KX: tl.constexpr, KB: tl.constexpr, HAS_BASE: tl.constexpr,
                  NLANES: tl.constexpr, ROWS: tl.constexpr, UNROLL: tl.constexpr):
    pid = tl.program_id(0)
    start = pid.to(tl.int64) * (NLANES * ROWS)
    lanes = tl.arange(0, NLANES)
    acc = tl.zeros([NLANES], dtype=tl.float64)
    if start + NLANES * ROWS <= n:
        # a full block: unmasked loads, written out inline (the interpreter charges per op)
        px = x_ptr + start + lanes
        pb = xb_ptr + start + lanes
        for _r0 in range(0, ROWS, UNROLL):
            for _u in tl.static_range(UNROLL):
                if KX == 2:
                    x = (tl.load(px).to(tl.int32) << 16).to(tl.float32, bitcast=True)
                else:
                    x = tl.load(px).to(tl.float32)
                if HAS_BASE:
                    if KB == 2:
                        x = x - (tl.load(pb).to(tl.int32) << 16).to(tl.float32, bitcast=True)
                    else:
                        x = x - tl.load(pb).to(tl.float32)
                    pb += NLANES
                d = x.to(tl.float64)
                acc += d * d  # exact: an fp32 squared has at most 48 significant bits
                px += NLANES
    else:
        # the last, partial block: rows past the end would add +0.0 and are skipped
        nrows = (n - start + NLANES - 1) // NLANES
        offs = start + lanes
        for _r in range(0, nrows):
            d = _delta(x_ptr, xb_ptr, offs, offs < n, KX, KB, HAS_BASE).to(tl.float64)
            acc += d * d
            offs += NLANES
    # the fixed halving tree for LANES == 256
    acc = _pair_sum(acc, 128)
    acc = _pair_sum(acc, 64)
    acc = _pair_sum(acc, 32)
    acc = _pair_sum(acc, 16)
    acc = _pair_sum(acc, 8)
    acc = _pair_sum(acc, 4)
    acc = _pair_sum(acc, 2)
    lo, hi = tl.split(acc)
    tl.store(out_ptr + pid, lo + hi)


@triton.jit
def _conflict_abs(f_ptr, fb_ptr, a_ptr, ab_ptr, offs, inb,
                       KF: tl.constexpr, KFB: tl.constexpr, HAS_FB: tl.constexpr,
                       KA: tl.constexpr, KAB: tl.constexpr, HAS_AB: tl.constexpr):
    f = _delta(f_ptr, fb_ptr, offs, inb, KF, KFB, HAS_FB)
    a = _delta(a_ptr, ab_ptr, offs, inb, KA, KAB, HAS_AB)
    conflict = ((f > 0) & (a < 0)) | ((f < 0) & (a > 0))  # sign test, never the product
    absf = tl.abs(f)
    absa = tl.abs(a)
    return f, absf, absa, conflict & inb


@triton.jit
def _sculpt_kernel(f_ptr, fb_ptr, a_ptr, ab_ptr, w_ptr, out_ptr, mask_ptr, cnt_ptr, n, t_ptr,
                   KF: tl.constexpr, KFB: tl.constexpr, HAS_FB: tl.constexpr,
                   KA: tl.constexpr, KAB: tl.constexpr, HAS_AB: tl.constexpr,
                   KW: tl.constexpr, HAS_W: tl.constexpr, KO: tl.constexpr,
                   HAS_MASK: tl.constexpr, MODE: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    inb = offs < n
    f, absf, absa, conflict = _conflict_abs(f_ptr, fb_ptr, a_ptr, ab_ptr, offs, inb,
                                            KF, KFB, HAS_FB, KA, KAB, HAS_AB)
    t32 = tl.load(t_ptr)  # the fp32 threshold, as a tensor so it is fp32 everywhere
    dominant = ((t32 * absa) < absf) & inb  # one fp32 multiply, then compare
    if MODE == 3:
        m = conflict & dominant
    elif MODE == 1:
        m = conflict
    elif MODE == 2:
        m = dominant
    else:
        m = inb & (offs < 0)
    s = tl.where(m, 0.0, f)
    if HAS_W:
        s = _load_f32(w_ptr, offs, inb, KW) + s  # one fp32 add; rounding in _store_out
    _store_out(out_ptr, offs, s, inb, KO)
    if HAS_MASK:
        bits = tl.reshape(m.to(tl.int32), (BLOCK_N // 8, 8)) << tl.arange(0, 8)[None, :]
        packed = tl.sum(bits, axis=1)
        boffs = pid.to(tl.int64) * (BLOCK_N // 8) + tl.arange(0, BLOCK_N // 8)
        tl.store(mask_ptr + boffs, packed.to(tl.uint8), mask=boffs < (n + 7) // 8)
    # Non-finite outputs as written: NaN, or |s| that rounds to Inf in the output dtype (round
    # to nearest even: fp32 beyond its max; bf16 from 0x7F7F8000; fp16 from 65520).
    abs_s = tl.abs(s)
    if KO == 0:
        big = abs_s > 3.4028234663852886e38
    elif KO == 2:
        big = abs_s >= 3.3961775292304600e38
    else:
        big = abs_s >= 65520.0
    nonfinite = (big | (s != s)) & inb
    tl.store(cnt_ptr + 3 * pid, tl.sum(conflict.to(tl.int32)).to(tl.int64))
    tl.store(cnt_ptr + 3 * pid + 1, tl.sum(m.to(tl.int32)).to(tl.int64))
    tl.store(cnt_ptr + 3 * pid + 2, tl.sum(nonfinite.to(tl.int32)).to(tl.int64))


@triton.jit
def _sweep_kernel(f_ptr, fb_ptr, a_ptr, ab_ptr, ts_ptr, cnt_ptr, n, nts,
                  KF: tl.constexpr, KFB: tl.constexpr, HAS_FB: tl.constexpr,
                  KA: tl.constexpr, KAB: tl.constexpr, HAS_AB: tl.constexpr,
                  BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    inb = offs < n
    f, absf, absa, conflict = _conflict_abs(f_ptr, fb_ptr, a_ptr, ab_ptr, offs, inb,
                                            KF, KFB, HAS_FB, KA, KAB, HAS_AB)
    row = cnt_ptr + pid.to(tl.int64) * (nts + 1)
    tl.store(row, tl.sum(conflict.to(tl.int32)).to(tl.int64))
    for j in range(nts):
        tj = tl.load(ts_ptr + j)
        m = conflict & ((tj * absa) < absf)
        tl.store(row + 1 + j, tl.sum(m.to(tl.int32)).to(tl.int64))


# ----------------------------------------------------------------------------- launchers


def _bits_view(x: torch.Tensor) -> torch.Tensor:
    return x.view(torch.int16) if x.dtype == torch.bfloat16 else x


def _prep(x: torch.Tensor | None, n: int, what: str) -> tuple[torch.Tensor | None, int]:
    if x is None:
        return None, 0
    if x.dtype not in KIND:
        raise TypeError(f"smfa triton: {what} dtype {x.dtype} is not bf16/fp16/fp32")
    if x.numel() != n:
        raise ValueError(f"smfa triton: {what} has {x.numel()} elements, expected {n}")
    return _bits_view(x.contiguous().view(-1)), KIND[x.dtype]


def _t32(t: float, device: torch.device) -> torch.Tensor:
    return torch.full((1,), float(t), dtype=torch.float32, device=device)


class Config:
    """Launch shapes; the interpreter wants few, large programs (~1.4 ms each)."""

    interpret = False
    sculpt_block = 4096
    sculpt_warps = 8
    norm_unroll = 8
    norm_warps = 4


def _device_guard(x: torch.Tensor):
    if x.device.type == "cuda":
        return torch.cuda.device(x.device)
    import contextlib

    return contextlib.nullcontext()


def sumsq_blocks(x: torch.Tensor, x_base: torch.Tensor | None = None) -> torch.Tensor:
    """Launch the norm kernel: per-BLOCK float64 sums of squares of x - x_base (as reference.sumsq_blocks)."""
    n = x.numel()
    xv, kx = _prep(x, n, "x")
    xb, kb = _prep(x_base, n, "x_base")
    nblocks = (n + BLOCK - 1) // BLOCK
    out = torch.empty(nblocks, dtype=torch.float64, device=x.device)
    if nblocks == 0:
        return out
    assert LANES == 256
    kw = {} if Config.interpret else {"num_warps": Config.norm_warps}
    with _device_guard(x):
        _sumsq_kernel[(nblocks,)](xv, xb if xb is not None else xv, out, n,
                                  KX=kx, KB=kb, HAS_BASE=xb is not None,
                                  NLANES=LANES, ROWS=BLOCK // LANES, UNROLL=Config.norm_unroll, **kw)
    return out


def sculpt_chunk(f: torch.Tensor, f_base: torch.Tensor | None, a: torch.Tensor, a_base: torch.Tensor | None, t: float,
                 mode: int, w: torch.Tensor | None, out: torch.Tensor,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """Check the operands and launch the sculpt kernel on one chunk; int64 [conflict, masked, nonfinite]."""
    n = f.numel()
    if mode not in (0, 1, 2, 3):
        raise ValueError(f"unknown mode {mode}")
    fv, kf = _prep(f, n, "f")
    fb, kfb = _prep(f_base, n, "f_base")
    av, ka = _prep(a, n, "a")
    ab, kab = _prep(a_base, n, "a_base")
    wv, kw_ = _prep(w, n, "w")
    if out.numel() != n or out.dtype not in KIND or not out.is_contiguous():
        raise ValueError("smfa triton: out must be a contiguous bf16/fp16/fp32 tensor of n elements")
    if mask is not None and (mask.numel() != (n + 7) // 8 or mask.dtype != torch.uint8
                             or not mask.is_contiguous()):
        raise ValueError("smfa triton: mask must be a contiguous uint8 tensor of ceil(n/8) bytes")
    blk = Config.sculpt_block
    nprog = (n + blk - 1) // blk
    counts = torch.zeros((max(nprog, 1), 3), dtype=torch.int64, device=f.device)
    if nprog:
        ov = out.view(-1)
        ov = ov.view(torch.int16) if ov.element_size() == 2 else ov  # 16-bit outs are stored as bits
        kw = {} if Config.interpret else {"num_warps": Config.sculpt_warps}
        with _device_guard(f):
            _sculpt_kernel[(nprog,)](
                fv, fb if fb is not None else fv, av, ab if ab is not None else av,
                wv if wv is not None else fv, ov, mask.view(-1) if mask is not None else ov,
                counts, n, _t32(t, f.device),
                KF=kf, KFB=kfb, HAS_FB=fb is not None, KA=ka, KAB=kab, HAS_AB=ab is not None,
                KW=kw_, HAS_W=wv is not None, KO=KIND[out.dtype], HAS_MASK=mask is not None,
                MODE=int(mode), BLOCK_N=blk, **kw)
    return counts.sum(dim=0)


def sweep_counts(f: torch.Tensor, f_base: torch.Tensor | None, a: torch.Tensor, a_base: torch.Tensor | None,
                 ts: torch.Tensor) -> torch.Tensor:
    """Launch the sweep kernel: the conflict count, then one masked count per threshold of `ts`, on the CPU."""
    n = f.numel()
    fv, kf = _prep(f, n, "f")
    fb, kfb = _prep(f_base, n, "f_base")
    av, ka = _prep(a, n, "a")
    ab, kab = _prep(a_base, n, "a_base")
    tsv = ts.reshape(-1).to(device=f.device, dtype=torch.float32).contiguous()
    nts = tsv.numel()
    blk = Config.sculpt_block
    nprog = (n + blk - 1) // blk
    counts = torch.zeros((max(nprog, 1), nts + 1), dtype=torch.int64, device=f.device)
    if nprog:
        kw = {} if Config.interpret else {"num_warps": Config.sculpt_warps}
        with _device_guard(f):
            _sweep_kernel[(nprog,)](
                fv, fb if fb is not None else fv, av, ab if ab is not None else av,
                tsv if nts else fv, counts, n, nts,
                KF=kf, KFB=kfb, HAS_FB=fb is not None, KA=ka, KAB=kab, HAS_AB=ab is not None,
                BLOCK_N=blk, **kw)
    return counts.sum(dim=0).cpu()
