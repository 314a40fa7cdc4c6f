"""Training progress: a tqdm bar with loss and ETA on a terminal, plain step lines otherwise
(and with --no-progress), nothing from processes other than the main one, and a bench run's
reuse of finished runs unaffected by the display flag."""

from __future__ import annotations

import io
import json
import re
import sys
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from smfa_methods.api import unlearn
from smfa_methods.method import TrainConfig
from smfa_methods.progress import ProgressCallback, format_duration

STEP_LINE = re.compile(r"step (\d+)/(\d+) loss [-\d.e+naif]+ lr [\d.e+-]+ elapsed \d+:\d\d eta (\d+:\d\d|\?)")


class FakeTTY(io.StringIO):
    """A stderr that says it is a terminal and keeps what was written."""

    def isatty(self) -> bool:
        return True


def _train(tiny_model, text_data, out, progress):
    cfg = TrainConfig(mode="lora", lr=1e-3, max_steps=3, batch_size=2, max_length=48, logging_steps=1,
                      progress=progress)
    return unlearn("ga_diff", model=tiny_model("llama"), forget=text_data[0], retain=text_data[1], out=out, train=cfg)


def test_no_progress_prints_step_lines_and_no_bar(tiny_model, text_data, tmp_path, capsys):
    _train(tiny_model, text_data, tmp_path, progress=False)
    cap = capsys.readouterr()
    lines = [ln for ln in cap.err.splitlines() if STEP_LINE.search(ln)]
    assert [STEP_LINE.search(ln).group(1, 2) for ln in lines] == [("1", "3"), ("2", "3"), ("3", "3")], cap.err
    assert all(ln.startswith("ga_diff: step ") for ln in lines)
    assert "ga_diff: done, 3 steps in" in cap.err
    # no training bar (the Hub's own weight loading/saving bars are not ours)
    assert "step/s" not in cap.err and all(ln in lines or "done" in ln for ln in cap.err.splitlines() if "ga_diff" in ln)
    assert "{'loss'" not in cap.out + cap.err  # the Trainer's PrinterCallback dicts are gone


def test_auto_on_a_terminal_draws_a_bar_with_loss(tiny_model, text_data, tmp_path, monkeypatch, capsys):
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    _train(tiny_model, text_data, tmp_path, progress=None)
    drawn = tty.getvalue()
    assert "\r" in drawn and "ga_diff" in drawn and "3/3" in drawn, drawn
    assert "loss=" in drawn and "lr=" in drawn
    assert not STEP_LINE.search(drawn)  # the bar replaces the plain lines
    assert "{'loss'" not in capsys.readouterr().out


def test_auto_off_a_terminal_prints_lines():
    """Not a terminal (CI log, file) and no choice given: the plain lines."""
    lines: list[str] = []
    cb = ProgressCallback(desc="t", log=lines.append)
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, max_steps=4)
    cb.on_train_begin(None, state, None)
    assert cb._bar is None
    state.global_step = 2
    cb.on_step_end(None, state, None)
    cb.on_log(None, state, None, logs={"loss": 1.2345, "learning_rate": 2e-3, "grad_norm": 0.5})
    cb.on_log(None, state, None, logs={"train_runtime": 1.0, "train_loss": 1.5})
    cb.on_train_end(None, state, None)
    assert len(lines) == 2 and STEP_LINE.search(lines[0]), lines
    assert lines[0].startswith("t: step 2/4 loss 1.234 lr 2.0e-03 elapsed 0:00 eta 0:00")
    assert lines[1].startswith("t: done, 2 steps in 0:00") and lines[1].endswith("mean loss 1.5")


def test_only_the_main_process_shows_progress():
    lines: list[str] = []
    for enabled in (True, False, None):
        cb = ProgressCallback(enabled=enabled, log=lines.append)
        state = SimpleNamespace(is_world_process_zero=False, global_step=0, max_steps=4)
        cb.on_train_begin(None, state, None)
        state.global_step = 1
        cb.on_step_end(None, state, None)
        cb.on_log(None, state, None, logs={"loss": 1.0, "learning_rate": 1e-4})
        cb.on_train_end(None, state, None)
        assert cb._bar is None
    assert lines == []


def test_format_duration():
    assert [format_duration(s) for s in (0, 31.4, 93, 3600, 3725)] == ["0:00", "0:31", "1:33", "1:00:00", "1:02:05"]
    assert format_duration(float("nan")) == "?" and format_duration(-1) == "?"


def test_train_command_no_progress_prints_step_lines(tiny_model, text_data, tmp_path):
    from smfa_cli.main import cli

    args = ["train", "--model", str(tiny_model("llama")), "--data", str(text_data[0]), "--out", str(tmp_path),
            "--max-steps", "2", "--batch-size", "2", "--max-length", "48", "--logging-steps", "1", "--no-progress"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "finetune: step 1/2 loss" in res.output and "finetune: step 2/2 loss" in res.output, res.output
    assert "step/s" not in res.output and "{'loss'" not in res.output
    assert json.loads((tmp_path / "run.json").read_text())["train"]["progress"] is False  # recorded as given


@pytest.mark.parametrize("recorded", [{"progress": None}, {"progress": True}, {}])
def test_bench_run_reuse_ignores_the_progress_flag(tmp_path, recorded):
    """A finished run is reused whatever --progress said then or now (an older run.json
    without the key too); any real setting still differs."""
    from smfa_eval.evaluate import RunMismatch
    from smfa_eval.run import _unlearned_model

    out, model_dir = tmp_path / "unlearn", tmp_path / "unlearn" / "model"
    model_dir.mkdir(parents=True)
    train = {k: v for k, v in vars(TrainConfig(max_steps=1)).items() if k != "progress"} | recorded
    info = {"method": "idk", "base_model": str(tmp_path / "base"), "options": {}, "train": train, "model": str(model_dir)}
    (out / "run.json").write_text(json.dumps(info))
    logs: list[str] = []
    args = ("idk", tmp_path / "base", tmp_path / "f.jsonl", tmp_path / "r.jsonl", out)
    for progress in (None, False, True):
        got = _unlearned_model(*args, TrainConfig(max_steps=1, progress=progress), {}, logs.append)
        assert got == model_dir
    assert logs == [f"idk: reusing {model_dir}"] * 3
    with pytest.raises(RunMismatch, match=r"other settings \(train\)"):
        _unlearned_model(*args, TrainConfig(max_steps=2, progress=False), {}, logs.append)
