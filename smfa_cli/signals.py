"""SIGINT / SIGTERM: one line on stderr and exit 130 / 143, with nothing published.

While the CLI imports (torch alone takes about a second) the handler exits at once: nothing
has been written yet. Once a command runs it raises :class:`Interrupted` instead, so that the
`finally` blocks and `AtomicOutput` remove what was being written before the process ends.
`Interrupted` is a BaseException (not a KeyboardInterrupt): neither `except Exception` in a
library nor click's own Ctrl-C handling ("Aborted!", exit 1) swallows it.
"""

from __future__ import annotations

import os
import signal
import sys

_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
_running = False


class Interrupted(BaseException):
    """A signal asked the process to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(_NAMES.get(signum, str(signum)))
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def message(signum: int) -> str:
    """What a run interrupted by signal `signum` prints: the signal's name, and that nothing was published."""
    return f"smfa: interrupted by {_NAMES.get(signum, signum)}; nothing was published"


def _handler(signum: int, _frame) -> None:
    if not _running:  # still importing: nothing to clean up, and no traceback to show
        os.write(2, (message(signum) + "\n").encode())
        os._exit(128 + signum)
    raise Interrupted(signum)


def is_cli_process() -> bool:
    """True in the `smfa` console script and `python -m smfa_cli.main`, not in a library user."""
    main = sys.modules.get("__main__")
    return os.path.basename(sys.argv[0] or "") in ("smfa", "smfa.exe") or \
        getattr(main, "__spec__", None) is not None and main.__spec__.name == "smfa_cli.main"


def install(running: bool) -> None:
    """Install the handlers; `running` once the command itself starts."""
    global _running
    _running = running
    for sig in _NAMES:
        signal.signal(sig, _handler)
