"""Bootstrap intervals over evaluation items.

A cell of Table 1 is a mean over a few dozen items, and ROUGE-L and judge scores move in
coarse steps; the percentile bootstrap over items says how far that mean could move with
other items of the same kind. Every draw is seeded from a string (the cell's name), so the
same items give the same interval on every run and machine, and every model evaluated on a
cell with the same number of items is resampled with the same indices.

`paired_bootstrap` compares two models on the SAME items: it resamples item indices once and
takes the mean difference on each resample, so the variation between items, which both
models share, cancels (a much narrower interval than comparing two separate intervals).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
CONFIDENCE = 0.95
_CHUNK = 1 << 21  # indices drawn at once (16 MiB)


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))


def _percentiles(means: np.ndarray, confidence: float) -> tuple[float, float]:
    a = (1.0 - confidence) / 2
    lo, hi = np.quantile(means, [a, 1.0 - a], method="linear")
    return float(lo), float(hi)


def _check(confidence: float, n_boot: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")


def bootstrap_ci(values: Sequence[float], key: str, *, n_boot: int = N_BOOT,
                 confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of `values` (seeded by `key`). One value,
    or values that are all equal, give a zero-width interval at that value."""
    _check(confidence, n_boot)
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap of no values")
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])  # exact: no resample can move a constant mean
    rng = _rng(key)
    step = max(1, _CHUNK // x.size)  # resamples per draw: bounded memory for large cells
    means = np.concatenate([x[rng.integers(0, x.size, size=(min(step, n_boot - s), x.size))].mean(axis=1)
                            for s in range(0, n_boot, step)])
    return _percentiles(means, confidence)


@dataclass(frozen=True)
class Paired:
    """Mean of b - a over the shared items, its interval, and the number of shared items."""

    diff: float
    ci_low: float
    ci_high: float
    n: int

    @property
    def includes_zero(self) -> bool:
        """True when the interval cannot tell the two apart."""
        return self.ci_low <= 0.0 <= self.ci_high


def paired_bootstrap(a: dict[str, float], b: dict[str, float], key: str, *, n_boot: int = N_BOOT,
                     confidence: float = CONFIDENCE) -> Paired:
    """The bootstrap of mean(b - a) over the item ids both have (values keyed by item id)."""
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("paired bootstrap: the two runs share no items")
    d = np.asarray([b[i] - a[i] for i in shared], dtype=float)
    lo, hi = bootstrap_ci(d, key, n_boot=n_boot, confidence=confidence)
    return Paired(float(d.mean()), lo, hi, len(shared))


def plus_minus(low: float | None, high: float | None) -> float | None:
    """The half-width shown as "± h" (the percentile interval need not be symmetric about the
    mean; the records keep both ends)."""
    return None if low is None or high is None else (high - low) / 2
