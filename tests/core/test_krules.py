"""Per-tensor k (`--k-rule REGEX=K`, `--k-rules FILE`): first fullmatch wins, `--k` covers the
rest, an unmatched tensor without `--k` is an error naming it; bit-exact with one k when every
rule gives that k; each tensor sculpted with its own k (checked against sculpt_tensor); the
report shows k per tensor; inspect sweeps one group with the others fixed; merge --scale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

import smfa_core
from smfa_cli.main import cli
from smfa_core.errors import SmfaError
from smfa_core.krules import load_rules, parse_rule

NAMES = ["model.visual.blocks.0.mlp.fc1.weight", "model.visual.blocks.1.mlp.fc1.weight",
         "model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight"]


@pytest.fixture
def deltas(tmp_path) -> Path:
    g = torch.Generator().manual_seed(1)
    f = {n: torch.randn(48, 70, generator=g).to(torch.bfloat16) for n in NAMES}
    a = {n: (0.5 * torch.randn(48, 70, generator=g)).to(torch.bfloat16) for n in NAMES}
    w = {n: torch.randn(48, 70, generator=g).to(torch.bfloat16) for n in NAMES}
    w["lm_head.weight"] = torch.randn(8, 70, generator=g).to(torch.bfloat16)
    save_file(f, tmp_path / "f.safetensors")
    save_file(a, tmp_path / "a.safetensors")
    save_file(w, tmp_path / "base.safetensors")
    return tmp_path


def _run(d: Path, out: str, **kw):
    return smfa_core.sculpt(str(d / "f.safetensors"), str(d / "a.safetensors"), base=str(d / "base.safetensors"),
                            out=str(d / out), emit=["delta", "merged", "mask"], **kw)


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.suffix == ".safetensors"}


def test_all_rules_same_k_is_bit_exact_with_single_k(deltas):
    one = _run(deltas, "one", k=2.0)
    for i, rules in enumerate([[".*=2"], [r"model\.visual\..*=2", ".*=2.0"], [r"model\.visual\..*=2"]]):
        kw = {"k": 2.0} if len(rules) == 1 and "visual" in rules[0] else {}
        rep = _run(deltas, f"r{i}", k_rules=rules, **kw)
        assert _files(deltas / f"r{i}") == _files(deltas / "one"), rules
        assert [r["k"] for r in rep.tensors] == [2.0] * len(NAMES)
        assert [r["masked"] for r in rep.tensors] == [r["masked"] for r in one.tensors]
    assert "k_rules" not in one.options and [r["k"] for r in one.tensors] == [2.0] * len(NAMES)


def test_each_tensor_gets_its_rules_k(deltas):
    rules = [r"model\.visual\.blocks\.0\..*=0.5", r"model\.visual\..*=5", r".*q_proj\.weight=0"]
    rep = _run(deltas, "o", k_rules=rules, k=1.5)
    want_k = dict(zip(NAMES, [0.5, 5.0, 1.5, 0.0], strict=True))  # first match wins; the rest: --k
    assert {r["name"]: r["k"] for r in rep.tensors} == want_k
    assert rep.options["k_rules"] == [[r.split("=")[0], float(r.split("=")[1])] for r in rules]
    f, a = load_file(str(deltas / "f.safetensors")), load_file(str(deltas / "a.safetensors"))
    got = load_file(str(deltas / "o" / "delta.safetensors"))
    for n, k in want_k.items():  # an independent path: the tensor API with that tensor's k
        torch.testing.assert_close(got[n], smfa_core.sculpt_tensor(f[n], a[n], k)[0], rtol=0, atol=0)
    assert len({r["masked"] for r in rep.tensors}) > 1


def test_unmatched_without_k_names_the_tensor(deltas):
    with pytest.raises(SmfaError, match=r"tensor 'model\.layers\.0\.mlp\.up_proj\.weight' matches no --k-rule"):
        _run(deltas, "o", k_rules=[r"model\.visual\..*=5", r".*q_proj.*=1"])
    assert not (deltas / "o").exists()  # checked before any output


def test_rule_parsing_and_file(tmp_path):
    assert parse_rule("a=b=3").pattern == "a=b" and parse_rule("a=b=3").k == 3.0  # split at the last '='
    for bad, msg in (("nok", "expected REGEX=K"), ("x=big", "is not a number"), ("x=-1", "--k must be"),
                     ("(=1", "not a valid regex")):
        with pytest.raises(SmfaError, match=msg):
            parse_rule(bad)
    p = tmp_path / "rules.txt"
    p.write_text("# vision tower first\nmodel\\.visual\\..*=5\n\n.*=10\n")
    assert [(r.pattern, r.k) for r in load_rules(p)] == [(r"model\.visual\..*", 5.0), (".*", 10.0)]
    p.write_text(".*=1\nbroken\n")
    with pytest.raises(SmfaError, match=r"rules.txt:2:"):
        load_rules(p)


def test_cli_rules_flags_file_and_report(deltas):
    (deltas / "rules.txt").write_text(".*=3\n")
    args = ["sculpt", "-f", str(deltas / "f.safetensors"), "-a", str(deltas / "a.safetensors"), "-o",
            str(deltas / "o"), "--k-rule", r"model\.visual\..*=0.25", "--k-rules", str(deltas / "rules.txt")]
    r = CliRunner().invoke(cli, [*args, "--report", str(deltas / "r.json")])
    assert r.exit_code == 0, r.output
    header = r.output.splitlines()[0].split()
    assert header[:4] == ["tensor", "numel", "rho", "k"]  # the summary shows k per tensor
    rep = json.loads((deltas / "r.json").read_text())
    # flags first, then the file
    assert {t["name"]: t["k"] for t in rep["tensors"]} == dict(zip(NAMES, [0.25, 0.25, 3.0, 3.0], strict=True))
    r = CliRunner().invoke(cli, ["sculpt", "-f", str(deltas / "f.safetensors"), "-a", str(deltas / "a.safetensors"),
                                 "-o", str(deltas / "o2"), "--k-rule", "nomatch=1"])
    assert r.exit_code != 0 and "matches no --k-rule" in r.output and "Traceback" not in r.output


def test_inspect_sweeps_one_group_with_the_others_fixed(deltas):
    from smfa_core.sweep import inspect

    f, a = str(deltas / "f.safetensors"), str(deltas / "a.safetensors")
    ks = [0.0, 1.0, 4.0]
    res = inspect(f, a, ks=ks, sweep_group=r"model\.visual\..*", k_rules=[r".*q_proj.*=2"], k=0.5)
    rows = {r["name"]: r for r in res["tensors"]}
    full = {r["name"]: r for r in inspect(f, a, ks=ks)["tensors"]}
    fixed = {NAMES[2]: 0.5, NAMES[3]: 2.0}
    for n in NAMES:
        if n in fixed:
            assert rows[n]["k"] == fixed[n] and len(set(rows[n]["masked"])) == 1
            rep = _run(deltas, f"chk{NAMES.index(n)}", k=fixed[n])
            masked = next(t["masked"] for t in rep.tensors if t["name"] == n)
            assert rows[n]["masked"] == [masked] * len(ks)
        else:
            assert rows[n]["k"] == "sweep" and rows[n]["masked"] == full[n]["masked"]
    total = sum(r["numel"] for r in rows.values())
    for i in range(len(ks)):
        assert res["overall"]["masked_frac"][i] == pytest.approx(sum(r["masked"][i] for r in rows.values()) / total)
    with pytest.raises(SmfaError, match="give --sweep-group"):
        inspect(f, a, ks=ks, k=1.0)
    r = CliRunner().invoke(cli, ["inspect", "-f", f, "-a", a, "--k-sweep", "0,1", "--sweep-group", ".*visual.*",
                                 "--k-rule", ".*=2", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["sweep_group"] == ".*visual.*"


def test_merge_scale(deltas):
    b = str(deltas / "base.safetensors")
    f = str(deltas / "f.safetensors")
    smfa_core.merge(b, f, out=str(deltas / "plain"))
    smfa_core.merge(b, f, out=str(deltas / "one"), scale=1.0)
    assert _files(deltas / "one") == _files(deltas / "plain")
    r = CliRunner().invoke(cli, ["merge", "--base", b, "--delta", f, "-o", str(deltas / "neg"), "--scale", "-0.5"])
    assert r.exit_code == 0, r.output
    base, delta = load_file(b), load_file(f)
    got = load_file(str(deltas / "neg" / "base.safetensors"))
    for n, w in base.items():
        want = (w.float() - 0.5 * delta[n].float()).to(torch.bfloat16) if n in delta else w
        assert torch.equal(got[n], want), n
    with pytest.raises(SmfaError, match="--scale must be a finite number"):
        smfa_core.merge(b, f, out=str(deltas / "bad"), scale=float("nan"))
