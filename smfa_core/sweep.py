"""`smfa inspect`: the masked fraction for every k at once, per tensor, per layer and
overall, and the Fig. 4-style plot."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from .backends import get_backend
from .errors import SmfaError
from .krules import as_rules, describe, resolve_ks
from .options import DEFAULTS, SculptOptions
from .placement import Placement
from .plan import chunk_ranges, open_inputs, plan_items, progress_bar, tensor_sumsq
from .tensor_api import check_k, rho_of, threshold

if TYPE_CHECKING:
    from .krules import KRule

_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")


def layer_of(name: str) -> str:
    """The layer a tensor belongs to, as 'lang.007' / 'vision.003' (tower and index), or 'other'."""
    m = _LAYER_RE.search(name)
    if m is None:
        return "other"
    prefix = name[: m.start()]
    tower = "vision" if any(v in prefix for v in ("visual", "vision")) else "lang"
    return f"{tower}.{int(m.group(1)):03d}"


# Each k costs one compare per element and one count per tensor: a few thousand points already
# draw a smooth curve, more only multiply the time (and, unbounded, run forever).
MAX_SWEEP_POINTS = 5000


def parse_sweep(spec: str) -> list[float]:
    """'start:stop:step' (inclusive) or a comma list -> sorted k values (finite, >= 0, at most
    MAX_SWEEP_POINTS of them)."""
    try:
        if ":" in spec:
            a, b, c = (float(x) for x in spec.split(":"))
            if not all(math.isfinite(x) for x in (a, b, c)) or c <= 0 or b < a:
                raise ValueError
            n = int(math.floor((b - a) / c + 1e-9)) + 1
            if n > MAX_SWEEP_POINTS:
                raise SmfaError(f"--k-sweep {spec!r} gives {n} values; at most {MAX_SWEEP_POINTS} "
                                "(use a larger STEP)")
            ks = [round(a + i * c, 12) for i in range(n)]
        else:
            ks = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise SmfaError(f"--k-sweep {spec!r}: expected START:STOP:STEP (finite, STEP > 0) or a comma "
                        "list of k") from None
    if len(ks) > MAX_SWEEP_POINTS:
        raise SmfaError(f"--k-sweep gives {len(ks)} values; at most {MAX_SWEEP_POINTS}")
    for k in ks:
        check_k(k)
    if not ks:
        raise SmfaError(f"--k-sweep {spec!r} gives no k values")
    return ks


def _sweep_tensor(fsrc, asrc, it, ts: torch.Tensor, be, step: int, pl: Placement, bar) -> torch.Tensor:
    """[conflict, masked at each threshold of ts] of one tensor, over its chunks."""
    counts = torch.zeros(len(ts) + 1, dtype=torch.int64)
    for i, (s, e) in enumerate(chunk_ranges(it.numel, step)):
        slot = i % pl.depth
        pl.sync(slot)
        f, fb = fsrc.read(it.name, s, e)
        a, ab = asrc.read(it.name, s, e)
        counts += be.sweep_counts(pl.put(slot, "f", f), pl.put(slot, "fb", fb), pl.put(slot, "a", a),
                                  pl.put(slot, "ab", ab), ts).cpu()
        pl.record(slot)
        bar.update((e - s) * 4)
    return counts


def _aggregate(rows: list[dict], nks: int) -> dict:
    """numel, conflicts and the masked fraction at each k over some tensors' rows."""
    numel = sum(r["numel"] for r in rows)
    masked = [sum(r["masked"][i] for r in rows) for i in range(nks)]
    return {"numel": numel, "conflict": sum(r["conflict"] for r in rows),
            "masked_frac": [m / numel if numel else 0.0 for m in masked]}


def inspect(
    forget: str,
    anchor: str,
    *,
    ks: Sequence[float] = tuple(x / 4 for x in range(41)),
    base: str | None = None,
    eps: float = DEFAULTS.eps,
    rho_scope: str = DEFAULTS.rho_scope,
    backend: str = DEFAULTS.backend,
    chunk_mb: float = DEFAULTS.chunk_mb,
    missing_anchor: str = DEFAULTS.missing_anchor,
    forget_kind: str = "auto",
    anchor_kind: str = "auto",
    progress: bool = False,
    device: str = "cpu",
    sweep_group: str | None = None,
    k_rules: Iterable[KRule | str | tuple[str, float]] | None = None,
    k: float | None = None,
) -> dict:
    """Masked fraction (mode both) for every k at once, per tensor, per layer and overall.

    `sweep_group` (a regex, fullmatch on tensor names): sweep only those tensors; every other
    tensor keeps the k its `k_rules` / `k` give it (see krules), at every point of the sweep."""
    t0 = time.perf_counter()
    opts = SculptOptions(eps=eps, rho_scope=rho_scope, backend=backend, chunk_mb=chunk_mb, missing_anchor=missing_anchor)
    rules = as_rules(k_rules)
    if (rules or k is not None) and sweep_group is None:
        raise SmfaError("inspect: --k-rule/--k fix the k of the tensors not swept; give --sweep-group REGEX "
                        "(the tensors whose k is swept)")
    group = None
    if sweep_group is not None:
        try:
            group = re.compile(sweep_group)
        except re.error as exc:
            raise SmfaError(f"--sweep-group {sweep_group!r}: not a valid regex ({exc})") from None
    pl = Placement(device)
    be = get_backend(backend, pl.device.type)
    step = opts.step
    fsrc, asrc, base_ckpt = open_inputs(forget, anchor, base, forget_kind, anchor_kind)
    try:
        items = [it for it in plan_items(fsrc, asrc, None, missing_anchor) if it.has_anchor]
        fixed = [it.name for it in items if group is not None and not group.fullmatch(it.name)]
        if group is not None and len(fixed) == len(items):
            raise SmfaError(f"--sweep-group {sweep_group!r} matches none of the {len(items)} tensors")
        fixed_k = resolve_ks(fixed, rules, k)
        bar = progress_bar(sum(it.numel for it in items) * 8, progress, "inspect")
        for it in items:
            it.ss_f = tensor_sumsq(fsrc, it, be, step, "forget", bar, pl)
            it.ss_a = tensor_sumsq(asrc, it, be, step, "anchor", bar, pl)
        g_rho = rho_of(sum(i.ss_f for i in items), sum(i.ss_a for i in items), eps)
        rows = []
        for it in items:
            rho = rho_of(it.ss_f, it.ss_a, eps) if rho_scope == "tensor" else g_rho
            # a fixed tensor: its one threshold at every sweep point, so the aggregates add up
            tk = [fixed_k[it.name]] * len(ks) if it.name in fixed_k else ks
            ts = torch.tensor([threshold(x, rho) for x in tk], dtype=torch.float32, device=pl.device)
            counts = _sweep_tensor(fsrc, asrc, it, ts, be, step, pl, bar)
            c = counts.tolist()
            rows.append({"name": it.name, "layer": layer_of(it.name), "numel": it.numel, "rho": rho,
                         "k": fixed_k.get(it.name, "sweep"), "conflict": c[0], "masked": c[1:]})
        bar.close()
    finally:
        fsrc.close()
        asrc.close()
        if base_ckpt is not None:
            base_ckpt.close()

    def agg(rs: list[dict]) -> dict:
        return _aggregate(rs, len(ks))

    layers: dict[str, list] = {}
    for r in rows:
        layers.setdefault(r["layer"], []).append(r)
    return {
        "ks": list(ks),
        "rho_scope": rho_scope,
        **({"sweep_group": sweep_group, "k": k, "k_rules": describe(rules)} if group is not None else {}),
        "backend": be.NAME,
        "overall": agg(rows),
        "layers": {name: agg(rs) for name, rs in sorted(layers.items())},
        "tensors": [{**r, "masked_frac": [m / r["numel"] for m in r["masked"]]} for r in rows],
        "seconds": time.perf_counter() - t0,
    }


def plot_sweep(result: dict, path: str) -> None:
    """Masked fraction vs k, overall and per layer (like the paper's Fig. 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = result["ks"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    layers = result["layers"]
    cmap = plt.get_cmap("viridis", max(2, len(layers)))
    for i, (name, agg) in enumerate(layers.items()):
        ax.plot(ks, [100 * x for x in agg["masked_frac"]], color=cmap(i), lw=0.8, alpha=0.7,
                label=name if len(layers) <= 12 else None)
    ax.plot(ks, [100 * x for x in result["overall"]["masked_frac"]], color="crimson", lw=2.2, label="overall")
    ax.set_xlabel("k")
    ax.set_ylabel("masked entries of ΔW_f (%)")
    ax.set_title("SMFA: masked fraction vs k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
