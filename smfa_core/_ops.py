"""Op schemas of the smfa kernel set: the one place they are written down.

Every backend implements these three ops with the same bits (see backends/reference.py,
the executable spec). Deltas can be given as a pair (x, x_base): the delta is then
float32(x) - float32(x_base), one fp32 rounding, so fine-tuned checkpoints need no
materialised delta.

- sumsq_blocks(x, x_base?) -> float64[ceil(n / BLOCK)]
      per-block sums of squares (fp64) in the canonical order of the reference.
- sculpt_chunk(f, f_base?, a, a_base?, t, mask_mode, w?, out!, mask!?) -> int64[3]
      writes out = M ? 0 : f  (or round(w + that) when w is given), optionally the
      bit-packed mask, returns [conflict count, masked count, non-finite outputs]: the
      last counts NaN/Inf in `out` as written (an overflow of out's dtype included), in the
      same pass, so that nothing non-finite is published unnoticed.
- sweep_counts(f, f_base?, a, a_base?, ts) -> int64[1 + len(ts)]
      [conflict count, masked count at t for t in ts], on the host   (inspect --k-sweep)
"""

from __future__ import annotations

import torch

# Canonical reduction layout for the norms: blocks of BLOCK elements (flattened), each
# summed as LANES interleaved lanes (element i of a block goes to lane i % LANES, lanes
# accumulate sequentially in fp64), lanes combined by a fixed halving tree. Block sums are
# combined exactly (math.fsum) by the caller, so chunking never changes a norm.
BLOCK = 65536
LANES = 256

MODES = {"none": 0, "conflict": 1, "magnitude": 2, "both": 3}

# The schemas, written once. `mask_mode`, not `mode`: an argument named `mode` collides with
# a keyword of torch's dispatch-mode redirection (torch.compile / opcheck's aot test fail).
SCHEMAS = {
    "sumsq_blocks": "sumsq_blocks(Tensor x, Tensor? x_base) -> Tensor",
    "sculpt_chunk": ("sculpt_chunk(Tensor f, Tensor? f_base, Tensor a, Tensor? a_base, float t, int mask_mode, "
                     "Tensor? w, Tensor(a!) out, Tensor(b!)? mask) -> Tensor"),
    "sweep_counts": "sweep_counts(Tensor f, Tensor? f_base, Tensor a, Tensor? a_base, Tensor ts) -> Tensor",
}


def _sumsq_blocks_fake(x, x_base):
    return x.new_empty(((x.numel() + BLOCK - 1) // BLOCK,), dtype=torch.float64)


def _sculpt_chunk_fake(f, f_base, a, a_base, t, mask_mode, w, out, mask):
    return f.new_empty((3,), dtype=torch.int64)


def _sweep_counts_fake(f, f_base, a, a_base, ts):
    # counts come back on the host whatever the device (inspect reads them at once)
    return torch.empty((1 + ts.numel(),), dtype=torch.int64, device="cpu")


_FAKES = {"sumsq_blocks": _sumsq_blocks_fake, "sculpt_chunk": _sculpt_chunk_fake,
          "sweep_counts": _sweep_counts_fake}


def define_ops(namespace: str) -> torch.library.Library:
    """Define the op set (schemas + fake impls) in `namespace`; backends register kernels on it
    (`smfa`: the C++ cpu/cuda kernels; `smfa_triton`: the Triton kernels)."""
    lib = torch.library.Library(namespace, "DEF")
    for name, schema in SCHEMAS.items():
        lib.define(schema)
        torch.library.register_fake(f"{namespace}::{name}", _FAKES[name], lib=lib)
    return lib


lib = define_ops("smfa")
