"""The `smfa` click group. Each command module exposes register(cli); plugins add more
through the `register_commands` hook."""

from __future__ import annotations

from . import signals

if signals.is_cli_process():  # before the imports below (torch: about a second) can be interrupted
    signals.install(running=False)

import importlib  # noqa: E402
import os  # noqa: E402

import click  # noqa: E402

COMMAND_MODULES = (
    "smfa_cli.core_cmds",     # sculpt, merge, inspect, kernels
    "smfa_cli.methods_cmds",  # methods, train, unlearn
    "smfa_cli.eval_cmds",     # bench build, eval, report
    "smfa_cli.import_cmd",    # bench import (after eval_cmds: it joins the bench group)
    "smfa_cli.reproduce_cmd", # reproduce
    "smfa_cli.attack_cmd",    # attack relearn|quantize|perturb
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="smfa")
@click.option("--debug", is_flag=True, help="Print tracebacks with errors (same as SMFA_DEBUG=1).")
def cli(debug: bool) -> None:
    """smfa: selective unlearning for multimodal LLMs (SMFA and baselines)."""
    if debug:
        os.environ["SMFA_DEBUG"] = "1"


for _mod in COMMAND_MODULES:
    importlib.import_module(_mod).register(cli)


def _plugin_commands() -> None:
    try:
        from smfa_methods.plugins import describe, get_plugin_manager, record_broken
    except ImportError:  # training extras not installed
        return
    for impl in get_plugin_manager().hook.register_commands.get_hookimpls():
        try:  # one plugin's broken commands never take the CLI down
            impl.function(cli=cli)
        except Exception as exc:
            record_broken(impl.plugin_name, f"register_commands raised {describe(exc)}")


_plugin_commands()


def main() -> None:
    """Console entry point: run the `smfa` CLI through run_cli (user errors, signals, exit codes)."""
    from .errors import run_cli

    run_cli(cli)


if __name__ == "__main__":
    main()
