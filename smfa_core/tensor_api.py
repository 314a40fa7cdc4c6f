"""In-memory sculpting of one tensor pair: `sculpt_tensor`, the contract on tensors."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ._ops import MODES
from .backends import get_backend
from .errors import SmfaError

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class TensorStats:
    """What the report says about one tensor."""

    numel: int
    norm_f: float
    norm_a: float
    rho: float
    t: float
    conflict: int
    masked: int

    @property
    def conflict_pct(self) -> float:
        return 100.0 * self.conflict / self.numel if self.numel else 0.0

    @property
    def masked_pct(self) -> float:
        return 100.0 * self.masked / self.numel if self.numel else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["conflict_pct"] = self.conflict_pct
        d["masked_pct"] = self.masked_pct
        return d


def check_mode(mode: str) -> int:
    """Validate a --mode name; returns its integer code for the kernels (SmfaError if unknown)."""
    if mode not in MODES:
        raise SmfaError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    return MODES[mode]


MAX_K = 1e6  # k·rho·|a| < |f| with k beyond this masks (next to) nothing: a typo, not a setting


def check_k(k: float) -> None:
    """Validate k: SmfaError unless it is a finite number in [0, MAX_K]."""
    if not (isinstance(k, (int, float)) and math.isfinite(k) and 0 <= k <= MAX_K):
        raise SmfaError(f"--k must be a finite number in [0, {MAX_K:g}], got {k!r}")


def check_options(*, eps: float, rho_scope: str, missing_anchor: str) -> None:
    """The options every sculpting entry point shares (sculpt, inspect, sculpt_model_)."""
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise SmfaError(f"--eps must be a finite number >= 0, got {eps!r}")
    if rho_scope not in ("tensor", "global"):
        raise SmfaError(f"--rho-scope must be tensor or global, got {rho_scope!r}")
    if missing_anchor not in ("error", "keep"):
        raise SmfaError(f"--missing-anchor must be error or keep, got {missing_anchor!r}")


def rho_of(sumsq_f: float, sumsq_a: float, eps: float) -> float:
    """rho = ||f||_F / (||a||_F + eps), in fp64. An all-zero anchor with eps = 0 gives
    rho = inf (0 when the forget delta is zero too): the limit of eps -> 0."""
    den = math.sqrt(sumsq_a) + eps
    if den == 0:
        return math.inf if sumsq_f > 0 else 0.0
    return math.sqrt(sumsq_f) / den


def threshold(k: float, rho: float) -> float:
    """t = float32(k * rho): the one fp32 factor every backend multiplies |a| by. For
    rho = inf (see rho_of) t is the largest float32, the limit that keeps 0·|a| = 0 (every
    entry dominates a zero anchor) where inf·0 would be NaN; k = 0 still gives t = 0."""
    if math.isinf(rho):
        return float(torch.finfo(torch.float32).max) if k > 0 else 0.0
    return float(torch.tensor(k * rho, dtype=torch.float64).to(torch.float32))


def exact_sum(block_sums: torch.Tensor) -> float:
    """Correctly rounded sum of the per-block fp64 sums (order-independent)."""
    return math.fsum(block_sums.cpu().tolist())


def sculpt_tensor(
    f: torch.Tensor,
    a: torch.Tensor,
    k: float,
    *,
    mode: str = "both",
    eps: float = 1e-8,
    backend: str = "auto",
    base: torch.Tensor | None = None,
    rho: float | None = None,
    name: str = "tensor",
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, TensorStats]:
    """Sculpt the forget delta `f` against the anchor `a` (the contract: README, Numerics).

    Returns (out, stats): out is the sculpted delta in f's dtype, or, with `base`, the
    merged weight round(base + sculpted) in base's dtype. `rho` overrides the per-tensor
    rho (the engine passes the global one for --rho-scope global). `out`: a contiguous
    buffer of the result's shape and dtype to write into (reuse it to skip the page faults of
    a fresh allocation; it may be `base` itself for an in-place merge).
    """
    check_k(k)
    imode = check_mode(mode)
    for label, x in (("forget", f), ("anchor", a), ("base", base)):
        if x is not None and x.dtype not in FLOAT_DTYPES:
            raise SmfaError(f"{name}: {label} dtype {x.dtype} is not bf16/fp16/fp32")
    if f.shape != a.shape or (base is not None and base.shape != f.shape):
        raise SmfaError(f"{name}: shape mismatch forget {tuple(f.shape)} anchor {tuple(a.shape)}"
                        + (f" base {tuple(base.shape)}" if base is not None else ""))
    if a.device != f.device or (base is not None and base.device != f.device):
        raise SmfaError(f"{name}: forget, anchor and base must be on one device")
    be = get_backend(backend, f.device.type)
    fc, ac = f.contiguous().view(-1), a.contiguous().view(-1)
    ssf = exact_sum(be.sumsq_blocks(fc, None))
    ssa = exact_sum(be.sumsq_blocks(ac, None))
    if not (math.isfinite(ssf) and math.isfinite(ssa)):
        which = "forget" if not math.isfinite(ssf) else "anchor"
        raise SmfaError(f"{name}: the {which} delta has NaN or Inf values")
    r = rho_of(ssf, ssa, eps) if rho is None else rho
    t = threshold(k, r)
    wc = None if base is None else base.contiguous().view(-1)
    like = fc if wc is None else wc
    if out is None:
        out = torch.empty_like(like)
    elif out.dtype != like.dtype or out.numel() != like.numel() or not out.is_contiguous() \
            or out.device != like.device:
        raise SmfaError(f"{name}: out must be a contiguous {like.dtype} tensor of {like.numel()} elements "
                        f"on {like.device}")
    counts = be.sculpt_chunk(fc, None, ac, None, t, imode, wc, out.view(-1), None).tolist()
    stats = TensorStats(f.numel(), math.sqrt(ssf), math.sqrt(ssa), r, t, int(counts[0]), int(counts[1]))
    return out.view(f.shape), stats
