# Triton decides between compiling and interpreting when a @triton.jit function is defined,
# i.e. when smfa_core/backends/triton_kernels.py is first imported, by reading
# TRITON_INTERPRET. Set it here, before any test imports a backend, so that on a machine
# without a GPU the triton kernels run on CPU tensors through the interpreter and their
# tests run. With a GPU (or TRITON_INTERPRET set explicitly, e.g. 0) they compile for CUDA.
import os

import pytest

# Installed third-party method plugins never load by accident (set before any plugin manager
# exists; tests that want one install it and set SMFA_PLUGINS themselves).
os.environ["SMFA_PLUGINS"] = ""

if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():  # does not initialise CUDA
        os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture(autouse=True)
def _no_third_party_plugins(monkeypatch):
    """Every test starts and ends with a fresh plugin manager that loads no installed plugin."""
    from smfa_methods.plugins import reset_plugin_manager

    monkeypatch.setenv("SMFA_PLUGINS", "")
    reset_plugin_manager()
    yield
    reset_plugin_manager()
