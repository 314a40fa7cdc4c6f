"""The reproduction's opt-in row `smfa:public` (the public re-implementation's SMFA, the smfa
method's variant=public) next to the paper's smfa, trained on the whole retain split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smfa_eval.reproduce.preset import PRESET_DIR, PresetError, load_preset


def _preset(tmp_path: Path, smfa: str, protocol_extra: str = "") -> Path:
    text = (PRESET_DIR / "quick.toml").read_text()
    head, _, rest = text.partition("[methods]")
    _, _, tail = rest.partition("[protocol]")
    src = tmp_path / "public.toml"
    src.write_text(f"{head}[methods]\nsmfa = {{ {smfa} }}\nidk = {{}}\n[protocol]{protocol_extra}{tail}")
    return src


def _recording(rep, tmp_path, monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(rep, "unlearn", lambda bench, orig, split, method, lr, opts, tag="", retain="few":
                        calls.append(("unlearn", method, opts, tag, retain)) or tmp_path / f"u{tag}")
    monkeypatch.setattr(rep, "sculpt", lambda *a, **kw: tmp_path / "s")
    monkeypatch.setattr(rep, "evaluate", lambda bench, model, split, label, reads, k=None, phrasings=None:
                        calls.append(("eval", label, str(model), reads[-1], k)))
    return calls


def test_public_row_next_to_smfa(tmp_path, monkeypatch):
    from smfa_eval.reproduce import pipeline

    p = load_preset(str(_preset(tmp_path, "k = 2.0, k_image = 5.0, per_modality = false",
                                "\nmodality_ablation = true\npublic_variant = true")))
    assert p.protocol.public_variant and p.protocol.public_retain == "full"
    rep = pipeline.Reproduction(p, tmp_path / "out", 0, log=lambda s: None)
    rep._model_reads = ("bench",)
    calls = _recording(rep, tmp_path, monkeypatch)
    split = p.protocol.ablation_split
    rep._smfa_variants(None, tmp_path / "orig", tmp_path / "smfa", split, 2.0)
    runs = [c for c in calls if c[0] == "unlearn"]
    # the per-modality row keeps its options; the public row drops per_modality and asks for the whole retain split
    assert ("unlearn", "smfa", {"k": 2.0, "k_image": 5.0, "per_modality": True}, "-per_modality", "few") in runs
    assert ("unlearn", "smfa", {"k": 2.0, "k_image": 5.0, "variant": "public"}, "-public", "full") in runs
    ev = [c for c in calls if c[0] == "eval" and c[1] == "smfa:public"]
    assert ev == [("eval", "smfa:public", str(tmp_path / "u-public" / "model"), f"unlearn/{split}/smfa-public", 2.0)]
    calls.clear()
    rep._smfa_variants(None, tmp_path / "orig", tmp_path / "smfa", "forget05", 2.0)  # not the ablation split
    assert not any(c[0] == "unlearn" for c in calls)


def test_public_row_is_opt_in_and_its_retain_can_be_the_few_shot_set(tmp_path, monkeypatch):
    from smfa_eval.reproduce import pipeline

    for extra, want in (("", None), ("\npublic_variant = true\npublic_retain = \"few\"", "few")):
        p = load_preset(str(_preset(tmp_path, "k = 2.0", extra)))
        rep = pipeline.Reproduction(p, tmp_path / "out", 0, log=lambda s: None)
        rep._model_reads = ("bench",)
        calls = _recording(rep, tmp_path, monkeypatch)
        rep._smfa_variants(None, tmp_path / "orig", tmp_path / "smfa", p.protocol.ablation_split, 2.0)
        public = [c for c in calls if c[0] == "unlearn" and c[3] == "-public"]
        assert [c[4] for c in public] == ([want] if want else [])
    for name in ("quick", "paper"):  # opt-in: only the cpu reproduction compares the two
        assert not load_preset(name).protocol.public_variant
    assert load_preset("cpu").protocol.public_variant


@pytest.mark.parametrize("smfa, extra, match", [
    ("k = 2.0", "\npublic_variant = true\npublic_retain = \"half\"", "protocol.public_retain must be full or few"),
    ("k = 2.0, variant = \"public\"", "", "methods.smfa.variant must stay paper"),
    ("k = 2.0, variant = \"nope\"", "", "option 'variant' of 'smfa' must be one of paper, public"),
])
def test_bad_public_settings_fail_naming_the_key(tmp_path, smfa, extra, match):
    with pytest.raises(PresetError, match=match):
        load_preset(str(_preset(tmp_path, smfa, extra)))


def test_public_step_trains_on_the_whole_retain_split(bench_dir, tmp_path, monkeypatch):
    """retain="full": the step writes every fine-tuning item of the profiles outside the forget set
    (images resolvable from anywhere) and hands that file to `smfa unlearn`; its fingerprint says
    so, while a few-shot step keeps the fingerprint it always had."""
    from dataclasses import asdict

    import smfa_methods.api
    from smfa_eval.reproduce import pipeline
    from smfa_eval.reproduce.steps import fingerprint
    from smfa_eval.schema import Bench
    from smfa_methods.data import load_jsonl
    from smfa_methods.method import Result

    seen: dict = {}

    def fake_unlearn(method, *, model, forget, retain, out, train, options):
        seen[options.get("variant", "paper")] = Path(retain)
        return Result(metrics={})

    monkeypatch.setattr(smfa_methods.api, "unlearn", fake_unlearn)
    p = load_preset(str(_preset(tmp_path, "k = 2.0", "\npublic_variant = true")))
    rep = pipeline.Reproduction(p, tmp_path / "out", 0, log=lambda s: None)
    rep._model_reads = ()
    bench = Bench(bench_dir)
    split = "forget10"
    few = rep.unlearn(bench, tmp_path / "orig", split, "smfa", 1e-3, {"k": 2.0})
    full = rep.unlearn(bench, tmp_path / "orig", split, "smfa", 1e-3, {"k": 2.0, "variant": "public"}, tag="-public",
                       retain="full")
    sp = bench.split(split)
    assert seen["paper"] == bench.root / sp.retain_file
    assert seen["public"].name == "retain_full.jsonl" and (full / "retain_full.jsonl").is_file()
    rows = [json.loads(line) for line in (full / "retain_full.jsonl").read_text().splitlines()]
    finetune = [json.loads(line) for line in bench.path("finetune").read_text().splitlines()]
    want = [r for r in finetune if r.get("profile_id") and r["profile_id"] not in set(sp.forget)]
    assert len(rows) == len(want) and {r["id"] for r in rows} == {r["id"] for r in want}
    assert {r["profile_id"] for r in rows} > set(sp.retain_fewshot)  # more than D_r^few: all the others
    assert not {r["profile_id"] for r in rows} & set(sp.forget)
    exs = load_jsonl(full / "retain_full.jsonl")
    assert sum(e.image is not None for e in exs) == sum(bool(r.get("image")) for r in want) > 0
    cfg = {"method": "smfa", "split": split, "lr": 1e-3, "options": {"k": 2.0}, "unlearn": asdict(p.unlearn),
           "seed": 0}
    assert rep.steps.records[f"unlearn/{split}/smfa"]["fingerprint"] == fingerprint({"config": cfg, "reads": {}})
    assert few == tmp_path / "out" / "unlearn" / split / "smfa"
