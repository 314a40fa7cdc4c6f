"""A model stand-in for hand-computed loss tests: its logits are the batch's own."""

from __future__ import annotations

import torch

from smfa_methods.losses import token_ce


class StubModel(torch.nn.Module):
    """Returns the logits carried in the batch; loss = mean CE over labelled tokens."""

    def forward(self, stub_logits, labels, **_):
        out = type("Out", (), {})()
        out.logits = stub_logits
        out.loss = token_ce(stub_logits, labels)
        return out
