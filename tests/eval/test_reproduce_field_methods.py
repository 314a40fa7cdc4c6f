"""The reproduction takes the issue-11 methods by name from a preset, and its optional
per-modality row runs smfa with per_modality next to the single-delta smfa."""

from __future__ import annotations

from pathlib import Path

import pytest

from smfa_eval.reproduce.preset import PRESET_DIR, PresetError, load_preset

FIELD = {"grad_ascent": {}, "npo": {"beta": 0.2}, "simnpo": {}, "idk_dpo": {}, "rmu": {"layer": 0},
         "undial": {"gamma": 5.0}, "task_vector": {"alpha": 0.5, "lr": 3e-4}}


def _preset(tmp_path: Path, methods: str, protocol_extra: str = "") -> Path:
    text = (PRESET_DIR / "quick.toml").read_text()
    head, _, rest = text.partition("[methods]")
    _, _, tail = rest.partition("[protocol]")
    # the preset's sequential methods need not be among the ones given here
    tail = "".join(line for line in tail.splitlines(keepends=True) if not line.startswith("sequential_methods"))
    src = tmp_path / "field.toml"
    src.write_text(f"{head}[methods]\n{methods}\n[protocol]{protocol_extra}{tail}")
    return src


def _toml(methods: dict) -> str:
    def val(v):
        return repr(v) if not isinstance(v, bool) else str(v).lower()
    return "".join(f"{m} = {{ {', '.join(f'{k} = {val(v)}' for k, v in o.items())} }}\n" for m, o in methods.items())


def test_preset_takes_field_methods_by_name(tmp_path):
    p = load_preset(str(_preset(tmp_path, _toml({"smfa": {"k": 2.0, "k_image": 1.0}, **FIELD}),
                                "\nmodality_ablation = true")))
    assert set(FIELD) < set(p.methods) and p.protocol.modality_ablation
    with pytest.raises(PresetError, match="methods.npo: method 'npo' has no option gamma"):
        load_preset(str(_preset(tmp_path, _toml({"npo": {"gamma": 1.0}}))))


def test_per_modality_row_next_to_smfa(tmp_path, monkeypatch):
    from smfa_eval.reproduce import pipeline

    p = load_preset(str(_preset(tmp_path, _toml({"smfa": {"k": 2.0, "k_text": 4.0}}), "\nmodality_ablation = true")))
    rep = pipeline.Reproduction(p, tmp_path / "out", 0, log=lambda s: None)
    rep._model_reads = ("bench",)
    calls = []
    monkeypatch.setattr(rep, "unlearn", lambda bench, orig, split, method, lr, opts, tag="":
                        calls.append(("unlearn", method, opts, tag)) or tmp_path / f"u{tag}")
    monkeypatch.setattr(rep, "sculpt", lambda *a, **kw: tmp_path / "s")
    monkeypatch.setattr(rep, "evaluate", lambda bench, model, split, label, reads, k=None, phrasings=None:
                        calls.append(("eval", label, str(model), reads[-1])))
    rep._smfa_variants(None, tmp_path / "orig", tmp_path / "smfa", p.protocol.ablation_split, 2.0)
    assert ("unlearn", "smfa", {"k": 2.0, "k_text": 4.0, "per_modality": True}, "-per_modality") in calls
    ev = [c for c in calls if c[0] == "eval" and c[1] == "smfa:per_modality"]
    assert ev == [("eval", "smfa:per_modality", str(tmp_path / "u-per_modality" / "model"),
                   f"unlearn/{p.protocol.ablation_split}/smfa-per_modality")]
    calls.clear()
    rep._smfa_variants(None, tmp_path / "orig", tmp_path / "smfa", "forget05", 2.0)  # not the ablation split
    assert not any(c[0] == "unlearn" for c in calls)
