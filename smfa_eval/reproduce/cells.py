"""The small pieces every table of the reproduction report is made of: column abbreviations,
number formatting (with the bootstrap interval), the models of a split in record order, and
the memory mean that the tables and the tuning rule share."""

from __future__ import annotations

from .results import value

ABBR = {"image_understanding": "I-U", "image_memory": "I-M", "text_memory": "T-M"}
MEMORY = ("image_memory", "text_memory")


def is_sweep(model: str) -> bool:
    """SMFA at the preset's k or a k-sweep point (the ablation rows carry a k too)."""
    return model == "smfa" or model.startswith("smfa@")


def fmt(v: float | None, digits: int = 2) -> str:
    """A number with `digits` decimals, "-" for a missing one."""
    return "-" if v is None else f"{v:.{digits}f}"


def pm(rec: dict | None, digits: int = 2) -> str:
    """A record as "0.62 ± 0.04" (half the 95 % bootstrap interval; records from before the
    intervals existed show the value alone)."""
    if rec is None:
        return "-"
    if rec.get("ci_low") is None or rec.get("ci_high") is None:
        return fmt(rec["value"], digits)
    return f"{rec['value']:.{digits}f} ± {(rec['ci_high'] - rec['ci_low']) / 2:.{digits}f}"


def models_in(records: list[dict], split: str) -> list[str]:
    """The models with records on `split`, in the order they first appear."""
    seen: list[str] = []
    for r in records:
        if r["split"] == split and r["model"] not in seen:
            seen.append(r["model"])
    return seen


def memory_fact(records: list[dict], model: str, split: str, s: str, metric: str = "fact",
                phrasing: str = "paraphrase") -> float | None:
    """The mean of a model's image- and text-memory `metric` on set `s`, or None if one is missing."""
    vals = [value(records, model=model, split=split, set=s, task=t, phrasing=phrasing, metric=metric) for t in MEMORY]
    return None if None in vals else sum(vals) / len(vals)  # type: ignore[arg-type]
