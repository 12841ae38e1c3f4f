"""Sequence normalisation layers over B x L x D inputs (normalising the last dim, or D for batchnorm)."""

import torch
from torch import Tensor, nn

NORM_TYPES = ("layernorm", "scalenorm", "rmsnorm", "batchnorm", "syncbatchnorm")


class ScaleNorm(nn.Module):
    """x * g / rms(x) with one learned scalar g (Nguyen & Salazar, 2019)."""

    def __init__(self, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.scalar = nn.Parameter(torch.ones(1)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        factor = torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + self.eps)
        if self.scalar is not None:
            factor = factor * self.scalar  # on the B x L x 1 factor: one pass over x, not two
        return x * factor


class RMSNorm(nn.Module):
    """x * w / rms(x) with a learned per-channel weight w."""

    def __init__(self, dim: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        mean_square = x.square().mean(dim=-1, keepdim=True)
        if self.weight is not None:
            x = x * self.weight
        return x * torch.rsqrt(mean_square + self.eps)


class SequenceNorm(nn.Module):
    """One of ``NORM_TYPES`` applied to a B x L x D sequence.

    Batch norms take statistics over batch and time, padding included, as the official
    code does (its batchnorm recipes use fixed-length, unpadded inputs).
    """

    def __init__(self, norm_type: str, dim: int, *, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        if norm_type == "layernorm":
            self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=affine)
        elif norm_type == "scalenorm":
            self.norm = ScaleNorm(eps=eps, affine=affine)
        elif norm_type == "rmsnorm":
            self.norm = RMSNorm(dim, eps=eps, affine=affine)
        elif norm_type == "batchnorm":
            self.norm = nn.BatchNorm1d(dim, eps=eps, affine=affine)
        elif norm_type == "syncbatchnorm":
            self.norm = nn.SyncBatchNorm(dim, eps=eps, affine=affine)
        else:
            raise ValueError(f"unknown norm type {norm_type!r}; choose one of {', '.join(NORM_TYPES)}")
        self.norm_type = norm_type

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.norm, nn.modules.batchnorm._BatchNorm):
            return self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.norm(x)
