"""The `smfa` click group. Each command module exposes register(cli); plugins add more
through the `register_commands` hook."""

from __future__ import annotations

import importlib

import click

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
def cli() -> None:
    """smfa: selective unlearning for multimodal LLMs (SMFA and baselines)."""


for _mod in COMMAND_MODULES:
    importlib.import_module(_mod).register(cli)


def _plugin_commands() -> None:
    try:
        from smfa_methods.plugins import get_plugin_manager
    except ImportError:  # training extras not installed
        return
    get_plugin_manager().hook.register_commands(cli=cli)


_plugin_commands()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
