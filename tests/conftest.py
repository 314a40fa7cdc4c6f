# Triton decides between compiling and interpreting when a @triton.jit function is defined,
# i.e. when smfa_core/backends/triton_kernels.py is first imported, by reading
# TRITON_INTERPRET. Set it here, before any test imports a backend, so that on a machine
# without a GPU the triton kernels run on CPU tensors through the interpreter and their
# tests run. With a GPU (or TRITON_INTERPRET set explicitly, e.g. 0) they compile for CUDA.
import os

if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():  # does not initialise CUDA
        os.environ["TRITON_INTERPRET"] = "1"
