"""`smfa reproduce` with a preset's [launch]: the orchestrating process runs each training step
as `smfa train` / `smfa unlearn` under the launcher (smfa_eval/reproduce/launch.py).

- the command of a stage and of an unlearning step, against hand-written argv, and every
  TrainConfig field (all off their defaults) through the real CLI parser back to the same config;
- a bad [launch] fails naming the file and key;
- presets without [launch] keep the step fingerprints they had before launch support existed;
- a failed launched step is one line naming the step, and nothing is published;
- one real training step of the reproduction through `accelerate launch`, 2 CPU processes on gloo.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from smfa_cli.main import cli
from smfa_eval.reproduce.launch import LaunchFailed, run_launched, train_command, unlearn_command
from smfa_eval.reproduce.preset import Launch, PresetError, Stage, Unlearn, load_preset
from smfa_eval.reproduce.steps import Steps, fingerprint
from smfa_eval.reproduce.training import stage_config, unlearn_config
from smfa_methods.method import TrainConfig

REPO = Path(__file__).resolve().parents[2]
DDP = REPO / "configs" / "accelerate" / "ddp.yaml"
PY = sys.executable


def test_stage_command_maps_every_field():
    launch = Launch("accelerate launch", 2, config_file=Path("/cfg/ddp.yaml"), args=("--main_process_port", "0"))
    stage = Stage(data=("finetune",), max_steps=7, lr=2e-4, batch_size=4, mode="lora", lora_r=16, warmup_ratio=0.1,
                  min_lr_ratio=0.05, weight_decay=0.01)
    argv = train_command(launch, model=Path("/m"), data=Path("/o/.original.tmp/train.jsonl"), out=Path("/o/.original.tmp"),
                         image_root=Path("/o/bench"), cfg=stage_config(stage, seed=3, progress=False))
    assert argv == [
        PY, "-m", "accelerate.commands.launch", "--num_processes", "2", "--config_file", "/cfg/ddp.yaml",
        "--main_process_port", "0", "-m", "smfa_cli.main", "train", "--model", "/m",
        "--data", "/o/.original.tmp/train.jsonl", "--out", "/o/.original.tmp", "--image-root", "/o/bench",
        "--lora", "--lora-r", "16", "--lora-alpha", "32", "--epochs", "1.0", "--max-steps", "7", "--lr", "0.0002",
        "--batch-size", "2",  # the preset's batch is global: 4 over 2 processes
        "--grad-accum", "1", "--weight-decay", "0.01", "--warmup-steps", "0", "--warmup-ratio", "0.1",
        "--scheduler", "cosine", "--min-lr-ratio", "0.05", "--adam-beta2", "0.98", "--max-grad-norm", "1.0",
        "--seed", "3", "--max-length", "0", "--save-steps", "0", "--logging-steps", "50", "--report-to", "none",
        "--no-progress"]


def test_unlearn_command_maps_every_field():
    launch = Launch("torchrun", 4, args=("--master_port", "29555"))
    u = Unlearn(mode="full", epochs=5.0, lr=1e-3, batch_size=8, lora_r=8, lora_alpha=16, bf16=True)
    argv = unlearn_command(launch, method="smfa", model=Path("/o/original/model"), forget=Path("/b/f.jsonl"),
                           retain=Path("/b/r.jsonl"), out=Path("/o/unlearn/forget10/.smfa.tmp"),
                           cfg=unlearn_config(u, lr=3e-4, seed=0, progress=True),
                           options={"k": 2.0, "per_modality": True, "k_rules": ["q_proj.*=1.5"], "mode": "both"})
    assert argv == [
        PY, "-m", "torch.distributed.run", "--nproc_per_node", "4", "--master_port", "29555", "-m", "smfa_cli.main",
        "unlearn", "--method", "smfa", "--model", "/o/original/model", "--forget", "/b/f.jsonl",
        "--retain", "/b/r.jsonl", "--out", "/o/unlearn/forget10/.smfa.tmp",
        "--set", "k=2.0", "--set", "per_modality=true", "--set", 'k_rules=["q_proj.*=1.5"]', "--set", "mode=both",
        "--full", "--lora-r", "8", "--lora-alpha", "16", "--epochs", "5.0", "--max-steps", "-1", "--lr", "0.0003",
        "--batch-size", "2", "--grad-accum", "1", "--weight-decay", "0.0", "--warmup-steps", "0",
        "--warmup-ratio", "0.0", "--scheduler", "constant", "--min-lr-ratio", "0.0", "--adam-beta2", "0.999",
        "--max-grad-norm", "1.0", "--seed", "0", "--bf16", "--max-length", "0", "--save-steps", "0",
        "--logging-steps", "10", "--report-to", "none", "--progress"]


def test_every_train_config_field_survives_the_cli(tmp_path, monkeypatch):
    """Each field off its default, through the command and the CLI's own parser: the same
    TrainConfig and the same (typed) method options arrive in smfa_methods.api.unlearn."""
    import smfa_methods.api as api
    from smfa_methods.registry import get_method

    seen = {}
    monkeypatch.setattr(api, "unlearn", lambda method, **kw: seen.update(method=method, **kw) or api.Result())
    cfg = TrainConfig(mode="all", target=".*proj", lora_r=3, lora_alpha=5, epochs=2.5, max_steps=11, lr=1.5e-5,
                      batch_size=6, grad_accum=3, weight_decay=0.1, warmup_steps=4, warmup_ratio=0.2,
                      scheduler="cosine", min_lr_ratio=0.1, adam_beta2=0.95, max_grad_norm=0.5, seed=9, bf16=False,
                      fp16=True, max_length=77, save_steps=5, logging_steps=2, resume=True, report_to="tensorboard",
                      progress=False)
    assert all(getattr(cfg, f) != getattr(TrainConfig(), f) for f in vars(cfg) if f != "bf16")
    (tmp_path / "m").mkdir()
    options = {"k": 3, "eps": 1e-7, "k_rules": str(tmp_path / "rules.txt"), "variant": "paper"}
    argv = unlearn_command(Launch("accelerate launch", 3), method="smfa", model=tmp_path / "m",
                           forget=tmp_path / "f.jsonl", retain=tmp_path / "r.jsonl", out=tmp_path / "out", cfg=cfg,
                           options=options)
    r = CliRunner().invoke(cli, argv[argv.index("smfa_cli.main") + 1:])
    assert r.exit_code == 0, r.output
    assert seen["train"] == TrainConfig(**{**vars(cfg), "batch_size": 2})  # 6 over 3 processes
    m = get_method("smfa")
    assert m.resolve_options(seen["options"]) == m.resolve_options(options)
    assert seen["options"]["k_rules"] == '"' + str(tmp_path / "rules.txt") + '"'  # a path, not read as JSON


def _with_launch(tmp_path, launch: str) -> Path:
    path = tmp_path / "launch.toml"
    path.write_text(load_preset("quick").source.read_text() + "\n[launch]\n" + launch + "\n")
    return path


@pytest.mark.parametrize("launch,match", [
    ('launcher = "mpirun"\nnum_processes = 2', "launch.launcher must be one of"),
    ('num_processes = 2', "launch.launcher"),
    ('launcher = "torchrun"\nnum_processes = 0', "launch.num_processes must be an integer >= 1"),
    ('launcher = "torchrun"\nnum_processes = "2"', "launch.num_processes"),
    ('launcher = "torchrun"\nnum_processes = true', "launch.num_processes"),
    ('launcher = "torchrun"\nnum_processes = 3', r"launch.num_processes 3 must divide pretrain.batch_size 16"),
    ('launcher = "torchrun"\nnum_processes = 2\nconfig_file = "x.yaml"', "launch.config_file is accelerate's"),
    ('launcher = "accelerate launch"\nnum_processes = 2\nconfig_file = "nope.yaml"', "launch.config_file .*no such"),
    ('launcher = "accelerate launch"\nnum_processes = 2\nconfig_file = 3', "launch.config_file must be a path"),
    ('launcher = "accelerate launch"\nnum_processes = 2\nargs = "--x"', "launch.args must be a list of strings"),
    ('launcher = "accelerate launch"\nnum_processes = 2\nargs = ["--num_processes=4"]', "launch.args must not"),
    ('launcher = "accelerate launch"\nnum_processes = 2\ngpus = 2', r"\[launch\] has unknown key"),
    ('launcher = "torchrun"\nnum_processes = 2\nargs = ["--master-port=0"]', "launch.args --master_port 0"),
])
def test_bad_launch_fails_naming_the_key(tmp_path, launch, match):
    path = _with_launch(tmp_path, launch)
    with pytest.raises(PresetError, match=match) as exc:
        load_preset(str(path))
    assert str(path) in str(exc.value)


def test_launch_table_is_read(tmp_path):
    (tmp_path / "acc.yaml").write_text(DDP.read_text())
    p = load_preset(str(_with_launch(tmp_path, 'launcher = "accelerate launch"\nnum_processes = 8\n'
                                               'config_file = "acc.yaml"\nargs = ["--main_process_port", "0"]')))
    assert p.launch == Launch("accelerate launch", 8, tmp_path / "acc.yaml", ("--main_process_port", "0"))
    assert load_preset("quick").launch is None and load_preset("cpu").launch is None
    paper = load_preset("paper").launch
    assert paper is not None and paper.launcher == "accelerate launch" and paper.num_processes == 8


# Step fingerprints of the presets without [launch], recorded from the code before launch
# support (commit b5a3be0): launching must not make a finished cpu/quick run redo anything.
# cpu's were re-recorded when its [bench] gained holdout = 8 (the privacy evaluation), which
# changes the benchmark and so, by design, every step downstream of it.
BEFORE = {
    "quick": {"bench": "60b48ea2c10220a8", "base": "4c07d3e12b67b5a0", "pretrain": "323b2b0df88314ce",
              "original": "eeb17fda2d628bf7", "unlearn/forget10/smfa": "e631f2906d2dee0f",
              "unlearn/forget10/idk": "1780bdeb98dc5bfe", "unlearn/forget10/ga_diff": "7c1fec7f59c75ae3",
              "unlearn/forget10/kl_min": "b56b2741dd9807c9", "unlearn/forget10/manu": "ef9592c81090c2ed",
              "unlearn/forget10/smfa-per_modality": "9619a06b9056237f",
              "unlearn/forget10/smfa-public": "180c6534a7b19d47"},
    "cpu": {"bench": "3c7dc5f4c1da31ad", "base": "00632a8f9fb6ac34", "pretrain": "586d05b6234b2490",
            "original": "6e35e3dbb65dd255",
            "unlearn/forget05/smfa": "b07be7ee1c15daff", "unlearn/forget05/idk": "8699b1cfc5241f09",
            "unlearn/forget05/ga_diff": "97ba72d87e8006d4", "unlearn/forget05/kl_min": "e37d9b476be5af9b",
            "unlearn/forget05/manu": "d6134b437a784f14",
            "unlearn/forget10/smfa": "140096070c563227", "unlearn/forget10/idk": "62378c2ccbd826ac",
            "unlearn/forget10/ga_diff": "957e21db6fc5ad26", "unlearn/forget10/kl_min": "8f7226525b13e44f",
            "unlearn/forget10/manu": "6192cad2134e18e1",
            "unlearn/forget10/smfa-per_modality": "8d451b4c43255134",
            "unlearn/forget10/smfa-public": "4942e3b730a6d03e",
            "unlearn/forget15/smfa": "929edab21dc7018b", "unlearn/forget15/idk": "fb2efa5273a57b5b",
            "unlearn/forget15/ga_diff": "f750d050ca4043c9", "unlearn/forget15/kl_min": "1948b4ce588be7a7",
            "unlearn/forget15/manu": "51f67ad30c18c40e"},
}


class _Recorder:
    """A step ledger that records each step's fingerprint (as Steps.run computes it) and builds nothing."""

    def __init__(self) -> None:
        self.records: dict[str, dict] = {}

    def run(self, name, config, build, *, reads=()):
        fp = fingerprint({"config": config, "reads": {r: self.records[r]["fingerprint"] for r in reads}})
        self.records[name] = {"fingerprint": fp}
        return Path("/nonexistent") / name


@pytest.mark.parametrize("name", ["quick", "cpu"])
def test_presets_without_launch_keep_their_fingerprints(tmp_path, name):
    from smfa_eval.reproduce.labels import method_settings
    from smfa_eval.reproduce.pipeline import Reproduction

    p = load_preset(name)
    rep = Reproduction(p, tmp_path, 0, log=lambda _: None)
    rep.steps = _Recorder()
    rep.steps.run("bench", {"seed": rep.seed, **p.bench}, None)  # Reproduction.bench's config
    original = rep.original(None)
    for split in p.protocol.splits:
        for method in p.methods:
            lr, opts = method_settings(p, method)
            rep.unlearn(None, original, split, method, lr, opts)
    lr, opts = method_settings(p, "smfa")
    rep.unlearn(None, original, "forget10", "smfa", lr, {**opts, "per_modality": True}, tag="-per_modality")
    rep.unlearn(None, original, "forget10", "smfa", lr, {**opts, "variant": "public"}, tag="-public", retain="full")
    assert {k: v["fingerprint"] for k, v in rep.steps.records.items()} == BEFORE[name]


def test_a_failed_launched_step_names_the_step_and_publishes_nothing(tmp_path):
    steps = Steps(tmp_path, log=lambda _: None)
    fake = [PY, "-c", "import sys; sys.stderr.write('working\\nError: out of memory on rank 1\\n'); sys.exit(3)",
            "smfa_cli.main", "unlearn"]

    def build(tmp: Path) -> dict:
        (tmp / "half").write_text("x")
        return run_launched(fake, launch=Launch("accelerate launch", 2), step="unlearn/forget10/idk", out=tmp)

    with pytest.raises(LaunchFailed) as exc:
        steps.run("unlearn/forget10/idk", {}, build)
    msg = str(exc.value)
    assert msg == ("step unlearn/forget10/idk: `smfa unlearn` under accelerate launch x2 exited with status 3: "
                   "Error: out of memory on rank 1")
    assert not (tmp_path / "unlearn" / "forget10" / "idk").exists() and not steps.records


def test_reproduce_refuses_to_run_under_a_launcher(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    r = CliRunner().invoke(cli, ["reproduce", "--preset", "quick", "--out", str(tmp_path / "run"), "--dry-run"])
    assert r.exit_code == 1 and "runs as one process" in r.output and not (tmp_path / "run").exists()


def test_dry_run_prints_the_commands(tmp_path):
    path = _with_launch(tmp_path, 'launcher = "accelerate launch"\nnum_processes = 2\nargs = ["--main_process_port", "0"]')
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["reproduce", "--preset", str(path), "--out", str(out), "--dry-run", "--no-progress"])
    assert r.exit_code == 0, r.output
    p = load_preset(str(path))
    head = f"{PY} -m accelerate.commands.launch --num_processes 2 --main_process_port 0 -m smfa_cli.main"
    stage = stage_config(p.pretrain, seed=0, progress=False)
    expect = " ".join(train_command(p.launch, model=out / "base", data=out / ".pretrain.tmp" / "train.jsonl",
                                    out=out / ".pretrain.tmp", image_root=out / "bench", cfg=stage))
    assert f"  pretrain: {expect}" in r.output.splitlines() and expect.startswith(f"{head} train --model {out}/base")
    assert f"  unlearn/forget10/idk: {head} unlearn --method idk --model {out}/original/model " \
           f"--forget {out}/bench/unlearn/forget10_forget.jsonl" in r.output
    assert "  unlearn/forget10/manu: in this process" in r.output
    assert not out.exists()


def test_dry_run_lists_the_oracle_of_the_oracle_splits_only(tmp_path):
    from smfa_eval.reproduce.launch_plan import launch_plan

    text = load_preset("quick").source.read_text()
    text = text.replace('splits = ["forget10"]', 'splits = ["forget05", "forget10"]')
    assert 'splits = ["forget05", "forget10"]' in text  # the quick preset still has one split to widen
    text = text.replace("[protocol]", '[protocol]\nprivacy = true\noracle_splits = ["forget10"]')
    path = tmp_path / "p.toml"
    path.write_text(text + '\n[launch]\nlauncher = "torchrun"\nnum_processes = 2\n')
    steps = [s for s, _ in launch_plan(load_preset(str(path)), tmp_path / "run", 0)]
    assert "oracle/forget10" in steps and "oracle/forget05" not in steps
    path.write_text(text.replace('oracle_splits = ["forget10"]', "") + '\n[launch]\nlauncher = "torchrun"\nnum_processes = 2\n')
    steps = [s for s, _ in launch_plan(load_preset(str(path)), tmp_path / "run", 0)]
    assert "oracle/forget10" in steps and "oracle/forget05" in steps


def _weights(model: Path) -> dict:
    from safetensors.torch import load_file

    out: dict = {}
    for f in sorted(model.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _tiny_preset(tmp_path: Path, model: Path, launch: str = "") -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(f'''name = "tiny"
arch = "qwen2_5_vl"
[bench]
profiles = 4
general_images = 0
image_size = 48
[model]
path = "{model}"
[original]
mode = "lora"
lora_r = 4
data = ["finetune"]
max_steps = 2
lr = 1e-3
batch_size = 2
[unlearn]
mode = "lora"
epochs = 1
lr = 1e-3
batch_size = 2
[methods]
idk = {{}}
[protocol]
splits = ["forget10"]
{launch}''')
    return path


def test_a_real_training_step_through_accelerate_on_two_processes(tmp_path, tiny_checkpoint):
    """The reproduction's `original` stage under `accelerate launch` (configs/accelerate/ddp.yaml,
    2 CPU processes on gloo) publishes what the in-process stage does: the same files, a loadable
    model, the same steps, nearly the same weights (global batch 2 = 1 per process); then one
    unlearning step (idk) the same way."""
    from dataclasses import replace

    from smfa_eval.reproduce.pipeline import Reproduction
    from smfa_methods.models import load_model

    model = tiny_checkpoint("qwen2_5_vl")
    launched = load_preset(str(_tiny_preset(tmp_path, model, f'''[launch]
launcher = "accelerate launch"
num_processes = 2
config_file = "{DDP}"
args = ["--main_process_port", "0"]''')))
    runs = {}
    for name, preset in (("launched", launched), ("in-process", replace(launched, launch=None))):
        rep = Reproduction(preset, tmp_path / name, 0, progress=False, log=lambda _: None)
        bench = rep.bench()
        d = rep.original(bench).parent
        runs[name] = (d, rep.steps.records["original"])
        if name == "launched":  # and one unlearning step, `smfa unlearn` on the split's files
            u = rep.unlearn(bench, d / "model", "forget10", "idk", 1e-3, {})
            assert load_model(u / "model").model is not None and (u / "run.json").is_file()
            assert rep.steps.records["unlearn/forget10/idk"]["info"]["launch"] == "accelerate launch x2"
    (ld, lrec), (pd, prec) = runs["launched"], runs["in-process"]
    assert lrec["fingerprint"] == prec["fingerprint"]  # how a step ran is not what it depends on
    assert lrec["info"]["launch"] == "accelerate launch x2" and "launch" not in prec["info"]
    assert sorted(p.name for p in ld.iterdir()) == sorted(p.name for p in pd.iterdir())
    assert not any(p.name.endswith(".tmp") for p in ld.parent.iterdir())  # renamed into place
    assert load_model(ld / "model").model is not None
    la, pa = json.loads((ld / "run.json").read_text()), json.loads((pd / "run.json").read_text())
    assert la["train"]["batch_size"] == 1 and pa["train"]["batch_size"] == 2
    assert la["metrics"]["global_step"] == pa["metrics"]["global_step"] == 2
    # the same two optimizer steps on the same global batches: the same update, up to how the loss
    # is averaged (over each process's tokens, then the processes, vs over the batch's tokens) and
    # what that does to Adam's first, sign-like steps: within 20% here (exact equality at the same
    # per-process batch is test_methods_ddp's)
    base, lw, pw = (_weights(m) for m in (model, ld / "model", pd / "model"))
    moved = [k for k in base if not torch.equal(base[k], pw[k])]
    assert moved and set(lw) == set(pw)
    for k in moved:
        change = (pw[k] - base[k]).norm()
        assert (lw[k] - pw[k]).norm() < 0.35 * change, k


class _Direct:
    """A ledger that builds every step in a fresh directory (for the plumbing below)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, name, config, build, *, reads=()):
        tmp = self.root / f".{name.replace('/', '-')}.tmp"
        tmp.mkdir(parents=True)
        build(tmp)
        return tmp


def test_oracle_and_sequential_steps_go_through_the_launcher(tmp_path, small_bench, monkeypatch):
    """The privacy oracle (train_stage) and a sequential request (unlearn_run) reach the launcher
    with their step names and their own data (the processes themselves are stubbed here)."""
    import smfa_eval.reproduce.launch as launch_mod
    from smfa_eval.reproduce.pipeline import Reproduction
    from smfa_eval.reproduce.privacy_steps import oracle_model
    from smfa_eval.reproduce.sequential_steps import _unlearn
    from smfa_eval.schema import Bench

    calls: list = []
    monkeypatch.setattr(launch_mod, "run_launched",
                        lambda argv, *, launch, step, out: calls.append((step, argv, out)) or {"global_step": 1})
    preset = load_preset(str(_tiny_preset(tmp_path, tmp_path, '[launch]\nlauncher = "torchrun"\nnum_processes = 2')))
    rep = Reproduction(preset, tmp_path / "run", 0, progress=False, log=lambda _: None)
    rep.steps, rep._model_reads = _Direct(tmp_path / "run"), ("bench", "original")
    bench = Bench(small_bench)
    oracle_model(rep, bench, "forget10")
    request = tmp_path / "request1_forget.jsonl"
    _unlearn(tmp_path / "seq", method="idk", model=tmp_path / "m", bench=bench, split="forget10", lr=1e-3, options={},
             forget=request, rep=rep, step="sequential/forget10/idk/request1")
    (step1, argv1, out1), (step2, argv2, out2) = calls
    assert step1 == "oracle/forget10" and argv1[argv1.index("smfa_cli.main") + 1] == "train"
    assert argv1[argv1.index("--data") + 1] == str(out1 / "train.jsonl") and (out1 / "train.jsonl").is_file()
    forgotten = set(bench.split("forget10").forget)
    rows = [json.loads(x) for x in (out1 / "train.jsonl").read_text().splitlines()]
    assert rows and len(rows) < sum(1 for _ in bench.path("finetune").open()) and forgotten
    assert step2 == "sequential/forget10/idk/request1" and argv2[argv2.index("--forget") + 1] == str(request)
    assert argv2[:5] == [PY, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
