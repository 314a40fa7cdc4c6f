"""Sculpt-and-merge for the `smfa` method: the streaming engine, the same code path as
`smfa sculpt`, so the method's final model is exactly what the CLI would produce."""

from __future__ import annotations

from pathlib import Path


def sculpt_and_merge(
    forget: Path, anchor: Path, *, k: float, base: Path, out: Path, mode: str = "both", eps: float = 1e-8
) -> dict:
    """W_o + sculpt(ΔW_f, ΔW_a) for every tensor of ΔW_f, written as an HF checkpoint at `out`."""
    import smfa_core

    report = smfa_core.sculpt(str(forget), str(anchor), k=k, base=str(base), out=str(out), emit="merged",
                              mode=mode, eps=eps, overwrite=True)
    return report.as_dict()
