"""Relative position biases for Mega attention: b[i, j] depends on the offset j - i."""

import math

import torch
from torch import Tensor, nn

REL_POS_BIAS_TYPES = ("simple", "rotary")


class SimpleRelativePositionalBias(nn.Module):
    """One learned scalar per offset in [-(P-1), P-1]."""

    def __init__(self, max_positions: int):
        super().__init__()
        self.max_positions = max_positions
        self.rel_pos_bias = nn.Parameter(torch.empty(2 * max_positions - 1))
        nn.init.normal_(self.rel_pos_bias, mean=0.0, std=0.02)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "rel_pos_bias")
        if saved is not None and saved.shape != self.rel_pos_bias.shape:
            raise ValueError(f"{prefix}rel_pos_bias: the checkpoint's simple relative position bias covers "
                             f"{(saved.numel() + 1) // 2} positions (its chunk size, or all positions without "
                             f"chunks), this model {self.max_positions}: a simple bias keeps the chunk size "
                             f"(--encoder-chunk-size / --decoder-chunk-size) and, without chunks, the maximum "
                             f"positions it was trained with; a model trained with --rel-pos-bias rotary takes "
                             f"any chunk size")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, query_positions: Tensor, key_length: int) -> Tensor:
        """Shapes: query_positions: Q (positions 0..key_length-1); returns Q x key_length."""
        if key_length > self.max_positions:
            raise ValueError(f"sequence length {key_length} exceeds max_positions={self.max_positions} "
                             f"of the relative position bias; raise max positions or use a chunk size")
        offsets = torch.arange(key_length, device=query_positions.device) - query_positions.unsqueeze(-1)
        return self.rel_pos_bias[offsets + self.max_positions - 1]

    def offsets(self, size: int) -> Tensor:
        """b for the offsets -(size-1)..size-1 (a slice of the table). Shapes: returns 2 size - 1."""
        if size > self.max_positions:
            raise ValueError(f"sequence length {size} exceeds max_positions={self.max_positions} "
                             f"of the relative position bias; raise max positions or use a chunk size")
        return self.rel_pos_bias[self.max_positions - size:self.max_positions + size - 1]


class RotaryRelativePositionalBias(nn.Module):
    """b[i, j] = <rot_i(a), rot_j(b)> for learned vectors a, b of size z (rotary embedding); any
    number of positions."""

    def __init__(self, dim: int):
        super().__init__()
        if dim % 2:
            raise ValueError(f"rotary relative bias needs an even z dimension, got {dim}")
        self.dim = dim
        self.alpha = nn.Parameter(torch.empty(1, dim))
        self.beta = nn.Parameter(torch.empty(1, dim))
        nn.init.normal_(self.alpha, mean=0.0, std=0.02)
        nn.init.normal_(self.beta, mean=0.0, std=0.02)

    def _rotate(self, x: Tensor, positions: Tensor) -> Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=x.device, dtype=torch.float32) * -(math.log(10000) / half))
        angles = positions.float().unsqueeze(-1) * freqs  # P x half
        sin, cos = angles.sin().to(x.dtype), angles.cos().to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def forward(self, query_positions: Tensor, key_length: int) -> Tensor:
        key_positions = torch.arange(key_length, device=query_positions.device)
        a = self._rotate(self.alpha, query_positions)  # Q x z
        b = self._rotate(self.beta, key_positions)  # K x z
        return a @ b.t()

    def offsets(self, size: int) -> Tensor:
        """b for the offsets -(size-1)..size-1, read from the last and the first query rows (b
        depends only on j - i). Shapes: returns 2 size - 1."""
        rows = self(torch.arange(0, size, size - 1 if size > 1 else 1, device=self.alpha.device), size)
        return torch.cat([rows[-1], rows[0, 1:]])


def build_relative_positional_bias(kind: str, *, zdim: int, max_positions: int) -> nn.Module:
    if kind == "simple":
        return SimpleRelativePositionalBias(max_positions)
    if kind == "rotary":
        return RotaryRelativePositionalBias(zdim)
    raise ValueError(f"unknown relative position bias {kind!r}; choose one of {', '.join(REL_POS_BIAS_TYPES)}")
