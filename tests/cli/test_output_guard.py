"""The output guard (smfa_core.guard): no command writes over, into or around one of its inputs,
whatever --overwrite says. Each case runs the real command on a real checkpoint dir and real
PEFT adapters, and checks the exit, the one-line message and that every input is
byte-identical afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import peft
import pytest
import torch
from click.testing import CliRunner
from tiny_models import build_model

from smfa_cli.main import cli


def _adapter(model, path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    pm = peft.get_peft_model(model, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"],
                                                      init_lora_weights=False))
    pm.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """root/base (HF checkpoint), root/forget and root/anchor (PEFT adapters)."""
    root = tmp_path_factory.mktemp("guard")
    build_model("llama").save_pretrained(root / "base")
    _adapter(build_model("llama"), root / "forget", 1)
    _adapter(build_model("llama"), root / "anchor", 2)
    return root


def _snapshot(root: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = "dir" if os.path.isdir(p) else open(p, "rb").read()
    return out


def _refused(args: list[str], root: Path, match: str) -> None:
    before = _snapshot(root)
    r = CliRunner().invoke(cli, args)
    assert r.exit_code != 0, r.output
    assert isinstance(r.exception, SystemExit), r.exception  # a clean exit, not an uncaught exception
    assert match in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert _snapshot(root) == before


def _sculpt(root: Path, *extra: str) -> list[str]:
    return ["sculpt", "-f", str(root / "forget"), "-a", str(root / "anchor"), "--no-progress", *extra]


@pytest.mark.parametrize("suffix", ["", "/", "/./", "/../base"])
def test_sculpt_out_equal_to_base_is_refused(inputs, suffix):
    out = str(inputs / "base") + suffix
    _refused(_sculpt(inputs, "--base", str(inputs / "base"), "-o", out, "--overwrite"), inputs,
             "is the input --base")


def test_merge_out_equal_to_base_is_refused(inputs):
    _refused(["merge", "--base", str(inputs / "base"), "-d", str(inputs / "forget"), "-o", str(inputs / "base"),
              "--overwrite"], inputs, "is the input --base")


@pytest.mark.parametrize("which", ["forget", "anchor"])
def test_sculpt_out_equal_to_an_adapter_is_refused(inputs, which):
    _refused(_sculpt(inputs, "-o", str(inputs / which), "--overwrite"), inputs, f"is the input --{which}")


def test_out_equal_to_a_base_shard_or_adapter_weights_is_refused(inputs):
    _refused(_sculpt(inputs, "--base", str(inputs / "base"), "-o", str(inputs / "base" / "model.safetensors"),
                     "--overwrite"), inputs, "lies inside the input --base")
    _refused(["merge", "--base", str(inputs / "base"), "-d", str(inputs / "forget" / "adapter_model.safetensors"),
              "-o", str(inputs / "forget" / "adapter_model.safetensors"), "--overwrite"], inputs, "the input --delta")


def test_symlinked_base_pointing_at_out_is_refused(inputs, tmp_path):
    link = tmp_path / "base-link"
    link.symlink_to(inputs / "base")
    _refused(_sculpt(inputs, "--base", str(link), "-o", str(inputs / "base"), "--overwrite"), inputs,
             "is the input --base")


def test_out_inside_an_input_dir_is_refused(inputs):
    _refused(_sculpt(inputs, "--base", str(inputs / "base"), "-o", str(inputs / "base" / "sculpted")), inputs,
             "lies inside the input --base")
    assert not (inputs / "base" / "sculpted").exists()


def test_out_containing_an_input_is_refused(inputs):
    _refused(_sculpt(inputs, "-o", str(inputs), "--overwrite"), inputs, "contains the input --forget")


@pytest.mark.parametrize("target", ["base/model.safetensors", "forget/adapter_config.json"])
def test_report_over_an_input_file_is_refused(inputs, tmp_path, target):
    _refused(_sculpt(inputs, "--base", str(inputs / "base"), "-o", str(tmp_path / "o"),
                     "--report", str(inputs / target)), inputs, "--report")
    assert not (tmp_path / "o").exists()


def test_report_pointing_at_a_directory_is_refused(inputs, tmp_path):
    (tmp_path / "somedir").mkdir()
    _refused(_sculpt(inputs, "-o", str(tmp_path / "o"), "--report", str(tmp_path / "somedir")), inputs,
             "is a directory")
    assert not (tmp_path / "o").exists()


def test_inspect_out_json_over_adapter_weights_is_refused(inputs):
    _refused(["inspect", "-f", str(inputs / "forget"), "-a", str(inputs / "anchor"), "--no-progress",
              "--out-json", str(inputs / "forget" / "adapter_model.safetensors")], inputs, "lies inside the input --forget")


def test_inspect_plot_into_an_input_dir_is_refused(inputs):
    _refused(["inspect", "-f", str(inputs / "forget"), "-a", str(inputs / "anchor"), "--no-progress",
              "--plot", str(inputs / "anchor" / "fig.png")], inputs, "lies inside the input --anchor")


def test_unlearn_out_equal_to_model_is_refused(inputs, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "q?", "answer": "a."}\n')
    _refused(["unlearn", "--method", "idk", "--model", str(inputs / "base"), "--forget", str(data),
              "--retain", str(data), "--out", str(inputs / "base")], inputs, "is the input --model")


def test_train_out_whose_model_dir_is_the_input_is_refused(tmp_path):
    root = tmp_path / "runs"
    (root / "model").mkdir(parents=True)
    (root / "model" / "config.json").write_text("{}")
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "q?", "answer": "a."}\n')
    _refused(["train", "--model", str(root / "model"), "--data", str(data), "--out", str(root)], root,
             "OUT/model")


def test_eval_out_equal_to_model_with_overwrite_is_refused(inputs, tmp_path):
    (tmp_path / "bench").mkdir()
    _refused(["eval", "--model", str(inputs / "base"), "--data", str(tmp_path / "bench"), "--out",
              str(inputs / "base"), "--overwrite"], inputs, "is the input --model")


def test_bench_run_out_inside_the_data_is_refused(inputs):
    _refused(["bench", "run", "--model", str(inputs / "base"), "--data", str(inputs / "forget"), "--method", "idk",
              "--out", str(inputs / "forget" / "run"), "--overwrite"], inputs, "lies inside the input --data")


def test_report_out_equal_to_a_run_is_refused(inputs):
    _refused(["report", str(inputs / "anchor"), "--out", str(inputs / "anchor")], inputs, "is the input run")


def test_reproduce_publish_over_the_preset_is_refused(tmp_path):
    preset = tmp_path / "presets" / "mine.toml"
    preset.parent.mkdir()
    preset.write_bytes((Path(__file__).parents[2] / "smfa_eval" / "reproduce" / "presets" / "quick.toml").read_bytes())
    _refused(["reproduce", "--preset", str(preset), "--publish", str(preset.parent), "--dry-run"], tmp_path,
             "contains the input --preset")


def test_symlinked_shard_of_the_base_is_protected(inputs, tmp_path):
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / "abc123").write_bytes((inputs / "base" / "model.safetensors").read_bytes())
    snap = tmp_path / "snapshot"
    snap.mkdir()
    (snap / "config.json").write_bytes((inputs / "base" / "config.json").read_bytes())
    (snap / "model.safetensors").symlink_to(blobs / "abc123")  # a hub cache snapshot
    _refused(_sculpt(inputs, "--base", str(snap), "-o", str(blobs), "--overwrite"), tmp_path,
             "contains the input --base")
