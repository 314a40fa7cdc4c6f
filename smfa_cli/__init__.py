"""smfa_cli: the `smfa` command line, thin over the libraries."""

import logging as _logging

# transformers and peft import torchao when it is installed (the quantization attack's library),
# and torchao then warns about each CUDA-only extension a CPU machine cannot load, and torch
# about its enum registrations: noise on every command, not a problem.
for _name in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)
