"""The sculpt/merge/inspect report: per-tensor rows, totals, and a compact terminal table."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any


def tensor_row(name: str, shape: tuple[int, ...], numel: int, *, ss_f: float | None, ss_a: float | None,
               rho: float | None, k: float | None, t: float, conflict: int, masked: int, anchor: str) -> dict[str, Any]:
    """One tensor's report row, the same for the streaming engine and sculpt_model_: norms from the
    sums of squares, k and t only where a rule applied (rho is not None), percentages of numel."""
    return {
        "name": name, "shape": list(shape), "numel": numel,
        "norm_f": math.sqrt(ss_f) if ss_f is not None else None,
        "norm_a": math.sqrt(ss_a) if ss_a is not None else None,
        "rho": rho, "k": k if rho is not None else None, "t": t if rho is not None else None,
        "conflict": conflict, "masked": masked,
        "conflict_pct": 100.0 * conflict / numel if numel else 0.0,
        "masked_pct": 100.0 * masked / numel if numel else 0.0,
        "anchor": anchor,
    }


@dataclass
class Report:
    """What a run did. `tensors` has one row per tensor of the forget delta."""

    command: str
    options: dict[str, Any]
    sources: dict[str, Any]
    backend: str = ""
    tensors: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    bytes_read: int = 0
    bytes_written: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def totals(self) -> dict[str, Any]:
        numel = sum(r["numel"] for r in self.tensors)
        conflict = sum(r.get("conflict") or 0 for r in self.tensors)
        masked = sum(r.get("masked") or 0 for r in self.tensors)
        return {
            "tensors": len(self.tensors),
            "numel": numel,
            "conflict": conflict,
            "masked": masked,
            "conflict_pct": 100.0 * conflict / numel if numel else 0.0,
            "masked_pct": 100.0 * masked / numel if numel else 0.0,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "options": self.options,
            "sources": self.sources,
            "backend": self.backend,
            "totals": self.totals(),
            "seconds": self.seconds,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "outputs": self.outputs,
            **self.extra,
            "tensors": self.tensors,
        }

    def write_json(self, path: str | os.PathLike) -> None:
        write_json_file(path, self.as_dict())

    def summary(self, max_rows: int = 12) -> str:
        """A compact table: the tensors with the most masked entries, then totals."""
        rows = sorted(self.tensors, key=lambda r: -(r.get("masked_pct") or 0.0))
        per_k = bool(self.options.get("k_rules"))  # k differs per tensor: show it
        lines = [f"{'tensor':<60} {'numel':>12} {'rho':>9}" + (f" {'k':>7}" if per_k else "")
                 + f" {'conflict%':>9} {'masked%':>8}"]
        for r in rows[:max_rows]:
            rho, k = r.get("rho"), r.get("k")
            lines.append(
                f"{_short(r['name'], 60):<60} {r['numel']:>12,} "
                f"{'-' if rho is None else f'{rho:9.4g}':>9} "
                + (f"{'-' if k is None else f'{k:7.4g}':>7} " if per_k else "")
                + f"{r.get('conflict_pct', 0.0):>9.3f} {r.get('masked_pct', 0.0):>8.3f}"
            )
        if len(rows) > max_rows:
            lines.append(f"... {len(rows) - max_rows} more tensors (see the JSON report)")
        t = self.totals()
        lines.append(
            f"total: {t['tensors']} tensors, {t['numel']:,} entries, conflict {t['conflict_pct']:.3f}%, "
            f"masked {t['masked_pct']:.3f}% | backend {self.backend} | {self.seconds:.1f}s, "
            f"read {self.bytes_read / 1e9:.2f} GB, wrote {self.bytes_written / 1e9:.2f} GB"
        )
        return "\n".join(lines)


def write_json_file(path: str | os.PathLike, obj: Any) -> None:
    """`obj` as JSON at `path`, published atomically (a temporary sibling, then a rename)."""
    from .atomic import AtomicOutput

    with AtomicOutput(path, overwrite=True, is_dir=False) as tmp, open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]
