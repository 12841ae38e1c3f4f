"""Input front-ends of Mega models: token embeddings and real-valued (pixel, waveform) embeddings."""

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .dropout import Dropout, apply_dropout
from .norm import SequenceNorm


class TokenEmbedding(nn.Module):
    """x = scale * E[tokens], projected to d when E is narrower, optionally normalised, then dropout.

    ``embed_tokens`` is any module mapping B x L token ids to B x L x ``input_dim`` (an
    ``nn.Embedding``, or fairseq's ``AdaptiveInput``, which already outputs d); it is a module of
    its own so that models can share it (tied input/output or encoder/decoder embeddings).
    ``scale`` multiplies by sqrt(d), as the official code does unless ``--no-scale-embedding``.

    Shapes: tokens: B x L; returns B x L x d.
    """

    def __init__(self, embed_tokens: nn.Module, embed_dim: int, *, input_dim: int, scale: bool = True,
                 norm_type: Optional[str] = None, dropout: float = 0.0):
        super().__init__()
        self.embed_tokens = embed_tokens
        self.embed_scale = math.sqrt(embed_dim) if scale else 1.0
        self.project_in_dim = nn.Linear(input_dim, embed_dim, bias=False) if input_dim != embed_dim else None
        if self.project_in_dim is not None:
            nn.init.xavier_uniform_(self.project_in_dim.weight)
        self.norm = SequenceNorm(norm_type, embed_dim) if norm_type is not None else None
        self.dropout = Dropout(dropout)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embed_scale * self.embed_tokens(tokens)
        if self.project_in_dim is not None:
            x = self.project_in_dim(x)
        if self.norm is not None:
            x = self.norm(x)
        return apply_dropout(self.dropout, x)


class RealValuedEmbedding(nn.Module):
    """One real number per step (a pixel, an audio sample) times a learned vector plus a bias:
    x_t = u_t * w + b, then dropout.

    Shapes: values: B x L (float); returns B x L x d.
    """

    def __init__(self, embed_dim: int, *, dropout: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(embed_dim))
        self.bias = nn.Parameter(torch.empty(embed_dim))
        nn.init.normal_(self.weight, mean=0.0, std=1.0)
        nn.init.normal_(self.bias, mean=0.0, std=0.1)
        self.dropout = Dropout(dropout)

    def forward(self, values: Tensor) -> Tensor:
        return self.dropout(torch.addcmul(self.bias, values.unsqueeze(-1).to(self.weight.dtype), self.weight))
