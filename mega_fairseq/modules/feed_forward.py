"""Normalised feed-forward block that follows each Mega attention block."""

from torch import Tensor, nn

from .activations import get_activation
from .dropout import make_dropout
from .norm import SequenceNorm


class NormalizedFeedForwardNetwork(nn.Module):
    """y = x + W2 act(W1 norm(x)) (prenorm) or norm(x + W2 act(W1 x)) (postnorm)."""

    def __init__(self, embed_dim: int, ffn_hidden_dim: int, *, activation: str = "silu", dropout: float = 0.0,
                 hidden_dropout: float = 0.0, feature_dropout: bool = False, norm_type: str = "layernorm",
                 prenorm: bool = True, norm_affine: bool = True):
        super().__init__()
        self.activation = get_activation(activation)
        self.dropout = make_dropout(dropout, feature_dropout)
        self.hidden_dropout = make_dropout(hidden_dropout, feature_dropout)
        self.prenorm = prenorm
        self.norm = SequenceNorm(norm_type, embed_dim, affine=norm_affine)
        self.fc1 = nn.Linear(embed_dim, ffn_hidden_dim)
        self.fc2 = nn.Linear(ffn_hidden_dim, embed_dim)
        for linear in (self.fc1, self.fc2):
            nn.init.normal_(linear.weight, mean=0.0, std=0.02)
            nn.init.zeros_(linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: x: B x L x D; returns B x L x D."""
        residual = x
        if self.prenorm:
            x = self.norm(x)
        x = self.hidden_dropout(self.activation(self.fc1(x)))
        x = self.dropout(self.fc2(x)) + residual
        if not self.prenorm:
            x = self.norm(x)
        return x
