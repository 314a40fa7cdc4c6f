"""Training progress for `smfa train`, `smfa unlearn` and `smfa bench run`.

The Trainer runs with `disable_tqdm=True` (its own bar has no loss, and its PrinterCallback
prints raw log dicts); this callback replaces both. On a terminal it draws one tqdm bar per
training run, with the last logged loss and learning rate as the postfix and tqdm's ETA. Off
a terminal (a CI log, a redirected file, `--no-progress`) a bar's carriage returns would
turn into thousands of lines, so it prints one plain line per logging step instead:

    smfa/forget: step 120/480 loss 1.234 lr 2.0e-03 elapsed 0:31 eta 1:33

Only the main process (`state.is_world_process_zero`) shows anything, so a multi-process
run prints each line once.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback


def _stderr_line(msg: str) -> None:
    """The default `log`: one line on stderr (looked up per call, so redirections apply);
    stdout is left to the commands' results."""
    print(msg, file=sys.stderr, flush=True)


def format_duration(seconds: float) -> str:
    """m:ss, or h:mm:ss from one hour on; "?" when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressCallback(TrainerCallback):
    """A progress bar with loss, learning rate and ETA on a terminal; plain log lines otherwise.

    enabled: True = always a bar; False = never a bar, only the log lines (quiet for
        terminals, still visible progress in a CI log); None = a bar when stderr is a
        terminal, else the log lines (decided when training starts).
    desc: the bar's label and the log lines' prefix (the method, and the stage for SMFA).
    log: where the plain lines go (default: stderr).
    """

    def __init__(self, enabled: bool | None = None, desc: str = "train",
                 log: Callable[[str], None] | None = None) -> None:
        self.enabled = enabled
        self.desc = desc
        self.log = log or _stderr_line
        self._bar: Any = None
        self._lines = False
        self._start = 0.0
        self._start_step = 0
        self._train_loss: float | None = None

    def _use_bar(self) -> bool:
        if self.enabled is not None:
            return self.enabled
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty and isatty())

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self._bar, self._lines, self._train_loss = None, False, None
        if not state.is_world_process_zero:
            return
        self._start, self._start_step = time.monotonic(), state.global_step  # a resumed run starts mid-way
        if self._use_bar():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=state.max_steps, initial=state.global_step, desc=self.desc, unit="step",
                             dynamic_ncols=True, file=sys.stderr)
        else:
            self._lines = True

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if self._bar is not None:
            self._bar.update(state.global_step - self._bar.n)

    def on_log(self, args, state, control, logs: dict[str, float] | None = None, **kwargs) -> None:
        if not logs or not (self._bar is not None or self._lines):
            return
        if "train_loss" in logs:  # the Trainer's closing summary
            self._train_loss = logs["train_loss"]
        if "loss" not in logs:
            return
        loss, lr = logs["loss"], logs.get("learning_rate")
        if self._bar is not None:
            postfix = {"loss": f"{loss:.4g}"}
            if lr is not None:
                postfix["lr"] = f"{lr:.1e}"
            self._bar.set_postfix(postfix)
            return
        elapsed = time.monotonic() - self._start
        done = state.global_step - self._start_step
        eta = elapsed / done * (state.max_steps - state.global_step) if done > 0 else math.nan
        parts = [f"{self.desc}: step {state.global_step}/{state.max_steps}", f"loss {loss:.4g}"]
        if lr is not None:
            parts.append(f"lr {lr:.1e}")
        parts += [f"elapsed {format_duration(elapsed)}", f"eta {format_duration(eta)}"]
        self.log(" ".join(parts))

    def on_train_end(self, args, state, control, **kwargs) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._lines:
            line = f"{self.desc}: done, {state.global_step} steps in {format_duration(time.monotonic() - self._start)}"
            if self._train_loss is not None:
                line += f", mean loss {self._train_loss:.4g}"
            self.log(line)
        self._lines = False


def quiet_library_bars(progress: bool | None) -> None:
    """Silence transformers' own bars ("Loading weights", "Writing model shards") where ours
    are off (--no-progress, or auto off a terminal): in a log they are noise, one per model."""
    if progress is False or (progress is None and not sys.stderr.isatty()):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
