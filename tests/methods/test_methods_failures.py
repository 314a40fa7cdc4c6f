"""Training that fails loudly: a NaN loss or gradient stops the loop at once with the step and
the loss components, no model is published and the last good checkpoint stays; options are
typed by their defaults and must be finite; a method's exception names the method and the
step (traceback only with --debug) and leaves no empty OUT behind. Real tiny models, real
Trainer, the real CLI."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from smfa_methods import Method, hookimpl
from smfa_methods.api import unlearn
from smfa_methods.errors import TrainingDiverged
from smfa_methods.losses import ce
from smfa_methods.method import TrainConfig
from smfa_methods.plugins import get_plugin_manager


class NaNFromStep3(Method):
    """CE on the forget set that turns NaN from the third optimizer step."""

    name = "nan3"
    description = "test: NaN loss from step 3"
    options: dict = {}

    def compute_loss(self, model, inputs, trainer):
        loss = ce(model, inputs["forget"])
        trainer.record(forget_ce=loss)
        return loss * float("nan") if trainer.state.global_step >= 2 else loss


class NaNGradient(Method):
    """A finite loss whose gradient is NaN: d sqrt(x)/dx at 0 is inf, times the 0 of p * 0."""

    name = "nangrad"
    description = "test: finite loss, NaN gradient"
    options: dict = {}

    def compute_loss(self, model, inputs, trainer):
        p = next(p for p in model.parameters() if p.requires_grad)
        return ce(model, inputs["forget"]) + (p * 0).sum().sqrt()


class Boom(Method):
    name = "boom"
    description = "test: the loss raises"
    options: dict = {}

    def compute_loss(self, model, inputs, trainer):
        raise ValueError("broken plugin loss")


def _cli():
    from smfa_cli.main import cli

    return cli


def test_nan_loss_stops_training_keeps_last_good_checkpoint_and_publishes_nothing(tiny_model, text_data, tmp_path):
    cfg = TrainConfig(mode="lora", lr=1e-3, max_steps=5, batch_size=2, save_steps=1, progress=False)
    with pytest.raises(TrainingDiverged, match=r"'nan3': non-finite training at step 3 \(loss nan.*forget_ce") as e:
        unlearn(NaNFromStep3(), model=tiny_model("llama"), forget=text_data[0], retain=text_data[1],
                out=tmp_path / "o", train=cfg)
    ckpts = sorted(p.name for p in (tmp_path / "o" / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-1", "checkpoint-2"] and "checkpoint-2" in str(e.value)
    weights = load_file(tmp_path / "o" / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not (tmp_path / "o" / "model").exists() and not (tmp_path / "o" / "delta").exists()
    assert not (tmp_path / "o" / "run.json").exists()


def test_nan_gradient_with_a_finite_loss_stops_training(tiny_model, text_data, tmp_path):
    cfg = TrainConfig(mode="lora", lr=1e-3, max_steps=3, batch_size=2, progress=False)
    with pytest.raises(TrainingDiverged, match=r"'nangrad': non-finite training at step 1 \(loss [0-9.]+; "
                                               r"gradient norm nan"):
        unlearn(NaNGradient(), model=tiny_model("llama"), forget=text_data[0], retain=text_data[1],
                out=tmp_path / "o", train=cfg)
    assert not (tmp_path / "o" / "model").exists()


def test_failed_run_keeps_an_out_dir_that_existed(tiny_model, text_data, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="method 'boom' failed at step 1"):
        unlearn(Boom(), model=tiny_model("llama"), forget=text_data[0], retain=text_data[1], out=out,
                train=TrainConfig(max_steps=1, batch_size=2, progress=False))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # empty checkpoints/ removed, the rest kept


@pytest.mark.parametrize("value", ["NaN", "inf", "-Infinity"])
def test_set_non_finite_option_is_refused_before_loading(tiny_model, text_data, tmp_path, value):
    r = CliRunner().invoke(_cli(), ["unlearn", "--method", "ga_diff", "--model", str(tiny_model("llama")),
                                    "--forget", str(text_data[0]), "--retain", str(text_data[1]),
                                    "--out", str(tmp_path / "o"), "--set", f"retain_weight={value}"])
    assert r.exit_code == 1 and "option 'retain_weight' of 'ga_diff' must be a finite number" in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_options_are_typed_by_their_default():
    from smfa_methods.registry import get_method

    smfa = get_method("smfa")
    assert smfa.resolve_options({"k": "2", "mode": "conflict"}) == {
        "k": 2.0, "mode": "conflict", "eps": 1e-8, "k_rules": [], "per_modality": False, "k_image": -1.0,
        "k_text": -1.0, "variant": "paper"}
    assert isinstance(smfa.resolve_options({"k": "2"})["k"], float)
    with pytest.raises(Exception, match="'mode' of 'smfa' must be a string"):
        smfa.resolve_options({"mode": True})


def test_set_accepts_method_dot_key_for_unlearn(tiny_model, text_data, tmp_path):
    r = CliRunner().invoke(_cli(), ["unlearn", "--method", "ga_diff", "--model", str(tiny_model("llama")),
                                    "--forget", str(text_data[0]), "--retain", str(text_data[1]),
                                    "--out", str(tmp_path / "o"), "--set", "idk.retain_weight=2"])
    assert r.exit_code != 0 and "--set idk.retain_weight=2 is for method 'idk'" in r.output, r.output


def _register(method: Method) -> None:
    class Plugin:
        @hookimpl
        def register_methods(self, register):
            register(method)

    get_plugin_manager().register(Plugin(), name="test-plugin")


def _run_boom(tiny_model, text_data, out, *flags):
    _register(Boom())
    return CliRunner().invoke(_cli(), [*flags, "unlearn", "--method", "boom", "--model", str(tiny_model("llama")),
                                       "--forget", str(text_data[0]), "--retain", str(text_data[1]),
                                       "--out", str(out), "--max-steps", "2", "--no-progress"])


def test_exception_in_a_method_loss_names_method_and_step_and_cleans_up(tiny_model, text_data, tmp_path):
    r = _run_boom(tiny_model, text_data, tmp_path / "o")
    assert r.exit_code == 1, r.output
    assert "method 'boom' failed at step 1: ValueError: broken plugin loss" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "o").exists()  # OUT/checkpoints included: the run created them


def test_debug_flag_shows_the_traceback(tiny_model, text_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SMFA_DEBUG", "0")  # --debug sets it to 1 for the process; restored after the test
    r = _run_boom(tiny_model, text_data, tmp_path / "o", "--debug")
    assert r.exit_code == 1
    assert "Traceback" in r.output and "broken plugin loss" in r.output


def test_model_with_only_pytorch_model_bin_is_a_one_line_error(tmp_path, text_data):
    d = tmp_path / "pickled"
    d.mkdir()
    (d / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}')
    (d / "pytorch_model.bin").write_bytes(b"not unpickled")
    r = CliRunner().invoke(_cli(), ["train", "--model", str(d), "--data", str(text_data[0]),
                                    "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "only pytorch_model.bin (pickle); only safetensors checkpoints are read" in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def test_builtin_option_ranges_are_checked_before_training(tiny_model, text_data, tmp_path):
    for opt, msg in (("smfa.mode=bogus", "option 'mode' of 'smfa' must be one of none, conflict, magnitude, both"),
                     ("smfa.k=-1", "option 'k' of 'smfa' must be in [0, 1e+06], got '-1'")):
        r = CliRunner().invoke(_cli(), ["unlearn", "--method", "smfa", "--model", str(tiny_model("llama")),
                                        "--forget", str(text_data[0]), "--retain", str(text_data[1]),
                                        "--out", str(tmp_path / "o"), "--set", opt])
        assert r.exit_code == 1 and msg in r.output, r.output
        assert not (tmp_path / "o").exists()
    r = CliRunner().invoke(_cli(), ["methods", "--verbose"])
    assert "mode: str (none | conflict | magnitude | both), default 'both': mask rule" in r.output, r.output
