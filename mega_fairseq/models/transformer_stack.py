"""The Transformer baseline of the LRA comparison: fairseq's (postnorm) Transformer encoder layers
behind the same interface as :class:`~mega_fairseq.modules.MegaStack`, so that one classifier
(and one :class:`~mega_fairseq.models.mega_encoder.MegaEncoder`) serves both.

As the official LRA baseline (``TransformerLRAEncoder``): sinusoidal absolute positions are added
to the input scaled by sqrt(d), learned ones to the input as it is; the sum is optionally
layer-normalised (``embedding_norm``, the official ``--encoder-normalize-before``), dropout, then
the layers; the layers can share one set of weights (``tie_layer_weights``, the official ListOps
baseline).
"""

import math
from typing import Optional

import torch
from fairseq.modules import SinusoidalPositionalEmbedding, TransformerSentenceEncoderLayer
from torch import Tensor, nn

from ..modules import StackOutput


class TransformerStack(nn.Module):
    causal = False

    def __init__(self, *, layers: int, embed_dim: int, ffn_embed_dim: int, attention_heads: int, dropout: float,
                 attention_dropout: float, activation_dropout: float, activation_fn: str, max_positions: int,
                 learned_positions: bool = False, embedding_norm: bool = True, tie_layer_weights: bool = False):
        super().__init__()
        if embed_dim % attention_heads:
            raise ValueError(f"the model dimension {embed_dim} is not a multiple of the {attention_heads} "
                             f"attention heads")
        self.embed_dim = embed_dim
        self.num_layers = layers
        # the official encoder sets its embed_scale sqrt(d) only for sinusoidal positions (None otherwise)
        self.embed_scale = 1.0 if learned_positions else math.sqrt(embed_dim)
        if learned_positions:
            self.positions = nn.Embedding(max_positions, embed_dim)
            nn.init.normal_(self.positions.weight, mean=0.0, std=embed_dim ** -0.5)
        else:
            self.register_buffer("sinusoids", SinusoidalPositionalEmbedding.get_embedding(max_positions, embed_dim),
                                 persistent=False)
            self.positions = None
        self.embedding_norm = nn.LayerNorm(embed_dim) if embedding_norm else None
        self.dropout = nn.Dropout(dropout)

        def layer():
            return TransformerSentenceEncoderLayer(
                embedding_dim=embed_dim, ffn_embedding_dim=ffn_embed_dim, num_attention_heads=attention_heads,
                dropout=dropout, attention_dropout=attention_dropout, activation_dropout=activation_dropout,
                activation_fn=activation_fn)

        self.layers = nn.ModuleList(layer() for _ in range(1 if tie_layer_weights else layers))

    def position_embeddings(self, length: int, device) -> Tensor:
        table = self.positions.weight if self.positions is not None else self.sinusoids
        if length > table.size(0):
            raise ValueError(f"an input of {length} positions is longer than the {table.size(0)} positions of the "
                             f"Transformer's position embeddings (--max-positions)")
        return table[:length].to(device)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None, need_weights: bool = False) -> StackOutput:
        """Shapes: x: B x L x D; padding_mask: B x L (True at padding); returns B x L x D, zero at padding."""
        x = self.embed_scale * x + self.position_embeddings(x.size(1), x.device).to(x.dtype)
        if self.embedding_norm is not None:
            x = self.embedding_norm(x)
        x = self.dropout(x)
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        inner_states = [x]
        h = x.transpose(0, 1)  # fairseq's layers are time-first
        for i in range(self.num_layers):
            h, _ = self.layers[i % len(self.layers)](h, self_attn_padding_mask=padding_mask)
            inner_states.append(h.transpose(0, 1))
        x = h.transpose(0, 1)
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        return StackOutput(x, inner_states, None)
