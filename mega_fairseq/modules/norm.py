"""Sequence normalisation layers over B x L x D inputs (normalising the last dim, or D for batchnorm)."""

import functools
from typing import Callable, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .incremental import to_dtype

NORM_TYPES = ("layernorm", "scalenorm", "rmsnorm", "batchnorm", "syncbatchnorm")


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype sums over a sequence or a channel run in: float32 for half-precision inputs (a sum
    of squares reaches float16's largest value, 65504, from |x| >= 256), float64 kept."""
    return torch.promote_types(dtype, torch.float32)


@functools.lru_cache(maxsize=None)
def _constant(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A one-element tensor of ``value``, made once per dtype and device; a normal tensor also when
    first asked for under inference mode (autograd refuses to save an inference tensor)."""
    with torch.inference_mode(False):
        return torch.full((1,), value, dtype=dtype, device=device)


def inverse_rms(x: Tensor, eps: float, eps_tensor: Optional[Tensor] = None) -> Tensor:
    """1 / sqrt(mean(x^2) + eps) over the last dim, accumulated in float32 without a float32 copy
    of x; ``eps_tensor``: eps as a one-element tensor of that dtype, where the caller keeps it.
    Shapes: x: ... x D; returns ... x 1 in ``accumulation_dtype(x.dtype)``."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=accumulation_dtype(x.dtype))
    # eps + norm^2 / D in one op: each Python number in tensor arithmetic becomes a tensor that
    # torch then converts, which costs more than the op itself in a decoding step; eps is a kept
    # tensor broadcast over the rows (filling a new one per call cost as much as the addcmul)
    if eps_tensor is None:
        eps_tensor = _constant(eps, norm.dtype, norm.device)
    return torch.rsqrt(torch.addcmul(eps_tensor, norm, norm, value=1.0 / x.size(-1)))


def rms_normalise(x: Tensor, eps: float, *, scalar: Optional[Tensor] = None, weight: Optional[Tensor] = None,
                  eps_tensor: Optional[Tensor] = None) -> Tensor:
    """x / rms(x), times a learned ``scalar`` (``ScaleNorm``) or per-channel ``weight`` (``RMSNorm``).
    Shapes: x: ... x D, returned in its dtype."""
    factor = inverse_rms(x, eps, eps_tensor)  # ... x 1, at least float32
    if scalar is not None:
        factor = factor * scalar  # on the ... x 1 factor: one pass over x, not two
    y = to_dtype(x * factor, x.dtype)  # normalised before the weight: x * w may overflow
    return y if weight is None else y * weight


class ScaleNorm(nn.Module):
    """x * g / rms(x) with one learned scalar g (Nguyen & Salazar, 2019)."""

    def __init__(self, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.scalar = nn.Parameter(torch.ones(1)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: x: ... x D, returned in its dtype."""
        return rms_normalise(x, self.eps, scalar=self.scalar)


class RMSNorm(nn.Module):
    """x * w / rms(x) with a learned per-channel weight w."""

    def __init__(self, dim: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: x: ... x D, returned in its dtype."""
        return rms_normalise(x, self.eps, weight=self.weight)


class SequenceNorm(nn.Module):
    """One of ``NORM_TYPES`` applied to a B x L x D sequence.

    Batch norms take statistics over batch and time. Given a ``padding_mask`` in training, they
    take them over the positions that are not padding only (padding would otherwise leak into
    the statistics and the running averages; the official code has no mask, its batchnorm
    recipes use fixed-length inputs), all-reduced across processes for ``syncbatchnorm``.
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

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """Shapes: x: B x L x D; padding_mask: B x L (True at padding) or None."""
        norm = self.norm
        if isinstance(norm, nn.modules.batchnorm._BatchNorm):
            if padding_mask is not None and self.training and padding_mask.shape == x.shape[:2]:
                return masked_batch_norm(norm, x, padding_mask)
            if self.training and isinstance(norm, nn.SyncBatchNorm) and _distributed():
                # the path of padded batches: all processes must all-reduce the same statistics, padded
                # batch or not (nn.SyncBatchNorm would exchange other tensors, and syncs on GPUs only)
                return masked_batch_norm(norm, x, None)
            return norm(x.transpose(1, 2)).transpose(1, 2)
        return norm(x)


def evaluation_function(norm: SequenceNorm, dtype: torch.dtype, device: torch.device) -> Callable[[Tensor], Tensor]:
    """``norm`` in evaluation on unpadded inputs of ``dtype`` (float32 or float64), as a function that holds its
    parameters (so follows their in-place updates) and calls no module where the norm is layernorm, scalenorm or
    rmsnorm: the same ops as the module's ``forward``, for the whole-stack decoding step (``decoding``)."""
    inner = norm.norm
    if isinstance(inner, nn.LayerNorm):
        return functools.partial(F.layer_norm, normalized_shape=inner.normalized_shape, weight=inner.weight,
                                 bias=inner.bias, eps=inner.eps)
    if isinstance(inner, (ScaleNorm, RMSNorm)):
        return functools.partial(rms_normalise, eps=inner.eps, eps_tensor=_constant(inner.eps, dtype, device),
                                 scalar=getattr(inner, "scalar", None), weight=getattr(inner, "weight", None))
    return norm


def masked_batch_norm(norm: nn.modules.batchnorm._BatchNorm, x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
    """Training-mode batch norm of B x L x D over the positions where ``padding_mask`` is False
    (all of them if it is None): the same normalisation, running averages (unbiased variance,
    momentum) and gradients as ``norm`` applied to those positions alone. Statistics are summed
    over processes for ``nn.SyncBatchNorm``."""
    dtype = accumulation_dtype(x.dtype)
    xf = x.to(dtype)
    if padding_mask is None:
        count = xf.new_full((1,), x.size(0) * x.size(1))
        stats = torch.cat([count, xf.sum(dim=(0, 1)), xf.square().sum(dim=(0, 1))])
    else:
        keep = (~padding_mask).unsqueeze(-1).to(dtype)  # B x L x 1
        stats = torch.cat([keep.sum().view(1), (xf * keep).sum(dim=(0, 1)), (xf.square() * keep).sum(dim=(0, 1))])
    if isinstance(norm, nn.SyncBatchNorm) and _distributed():
        stats = _all_reduce_sum(stats)
    dim = x.size(-1)
    count, total, total_square = stats[0], stats[1:dim + 1], stats[dim + 1:]
    count = count.clamp(min=1.0)
    mean = total / count
    var = (total_square / count - mean.square()).clamp(min=0.0)
    if norm.track_running_stats and norm.running_mean is not None:
        with torch.no_grad():
            norm.num_batches_tracked.add_(1)
            momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
            unbiased = var * count / (count - 1).clamp(min=1.0)
            # averaged in float32 and then rounded: a half-precision buffer (fairseq --fp16) holds an
            # average of 16000 but not a batch variance of 160000
            norm.running_mean.copy_(norm.running_mean.to(dtype).lerp(mean, momentum))
            norm.running_var.copy_(norm.running_var.to(dtype).lerp(unbiased, momentum))
    y = (xf - mean) * torch.rsqrt(var + norm.eps)
    if norm.affine:
        y = y * norm.weight + norm.bias
    return y.to(x.dtype)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _all_reduce_sum(tensor: Tensor) -> Tensor:
    """A sum over processes that gradients flow back through."""
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(tensor)
