"""Element and feature (channel) dropout for B x L x D inputs."""

import torch.nn.functional as F
from torch import Tensor, nn


class Dropout(nn.Dropout):
    """``nn.Dropout`` that returns its input without calling torch when it drops nothing (in
    evaluation, or with p = 0): a decoding step is made of many such small calls."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        return F.dropout(x, self.p, True, self.inplace)


class FeatureDropout(nn.Module):
    """Drops whole channels: one mask per (example, channel), shared over time."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = x.new_empty(x.size(0), *([1] * (x.dim() - 2)), x.size(-1)).bernoulli_(1.0 - self.p)
        return x * mask / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def make_dropout(p: float, feature: bool) -> nn.Module:
    return FeatureDropout(p) if feature else Dropout(p)


def apply_dropout(dropout: nn.Module, x: Tensor) -> Tensor:
    """``dropout(x)`` in training; ``x`` in evaluation without calling the module (a module call costs
    a few microseconds, and a decoding step makes many small calls)."""
    return dropout(x) if dropout.training else x
