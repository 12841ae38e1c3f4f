"""Normalised feed-forward block that follows each Mega attention block."""

from typing import Optional

from torch import Tensor, nn

from .activations import get_activation
from .config import MegaLayerConfig
from .dropout import apply_dropout, make_dropout
from .gated_attention import init_linear
from .norm import SequenceNorm


class NormalizedFeedForwardNetwork(nn.Module):
    """y = x + W2 act(W1 norm(x)) (prenorm) or norm(x + W2 act(W1 x)) (postnorm);
    ``activation_dropout`` inside, ``dropout`` on the output."""

    def __init__(self, cfg: MegaLayerConfig):
        super().__init__()
        self.activation = get_activation(cfg.activation_fn)
        self.dropout = make_dropout(cfg.dropout, cfg.feature_dropout)
        self.activation_dropout = make_dropout(cfg.activation_dropout, cfg.feature_dropout)
        self.prenorm = cfg.normalize_before
        self.norm = SequenceNorm(cfg.normalization_type, cfg.embed_dim)
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.ffn_embed_dim, cfg.embed_dim)
        init_linear(self.fc1, self.fc2)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """Shapes: x: B x L x D; padding_mask: B x L (True at padding: left out of batch norm
        statistics) or None; returns B x L x D."""
        residual = x
        if self.prenorm:
            x = self.norm(x, padding_mask)
        x = apply_dropout(self.activation_dropout, self.activation(self.fc1(x)))
        x = apply_dropout(self.dropout, self.fc2(x)) + residual
        if not self.prenorm:
            x = self.norm(x, padding_mask)
        return x
