"""smfa_cli: the `smfa` command line, thin over the libraries."""

from smfa_eval.attacks.quiet import silence_torchao as _silence_torchao

# transformers and peft import torchao whenever it is installed: quiet for every command
_silence_torchao()
