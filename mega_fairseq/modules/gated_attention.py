"""Moving average equipped gated attention (Mega, section 3), with Mega-chunk."""

from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import attention
from .activations import get_activation
from .config import MegaLayerConfig
from .dropout import apply_dropout, make_dropout
from .ema import MultiDimensionalDampedEMA
from .incremental import IncrementalState, IncrementalStateMixin
from .norm import SequenceNorm
from .positional_bias import build_relative_positional_bias


def init_linear(*linears: nn.Linear):
    """The official initialisation of Mega's projections: N(0, 0.02) weights, zero biases."""
    for linear in linears:
        nn.init.normal_(linear.weight, mean=0.0, std=0.02)
        nn.init.zeros_(linear.bias)


class GatedBlock(IncrementalStateMixin, nn.Module):
    """What Mega's self- and cross-attention blocks share: the norm (pre or post), dropouts, the
    attention function with its scaling, and the gated residual Y = phi * H + (1 - phi) * X."""

    def __init__(self, cfg: MegaLayerConfig):
        super().__init__()
        self.embed_dim, self.zdim = cfg.embed_dim, cfg.z_dim
        self.attention_activation = cfg.attention_activation_fn
        self.activation = get_activation(cfg.activation_fn)
        # softmax scales scores by 1/sqrt(z); laplace and relu^2 divide them by the visible keys
        self.scaling = cfg.z_dim ** -0.5 if cfg.attention_activation_fn == "softmax" else None
        self.attention_dropout = cfg.attention_dropout
        self.dropout = make_dropout(cfg.dropout, cfg.feature_dropout)
        self.hidden_dropout = make_dropout(cfg.hidden_dropout, cfg.feature_dropout)
        self.prenorm = cfg.normalize_before
        self.norm = SequenceNorm(cfg.normalization_type, cfg.embed_dim)
        # how fused softmax attention passes masks to torch (attention.MASK_MODES); "explicit" is
        # the score-sized reference, for the benchmark and tests
        self.mask_mode = "auto"

    def block_input(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        return self.norm(x, padding_mask) if self.prenorm else x

    def gated_residual(self, residual: Tensor, phi: Tensor, h: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """phi * dropout(h) + (1 - phi) * residual, then the norm of a postnorm block."""
        h = apply_dropout(self.dropout, h)
        out = torch.addcmul(residual, phi, h - residual)
        return out if self.prenorm else self.norm(out, padding_mask)

    def attention_options(self, need_weights: bool) -> dict:
        """The block's settings for the attention dispatcher (``attention.attend``,
        ``attention.relative_attention``), which chooses the kernel."""
        return dict(function=self.attention_activation, scaling=self.scaling,
                    dropout=self.attention_dropout if self.training else 0.0, need_weights=need_weights,
                    mask_mode=self.mask_mode)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, visible: Optional[Tensor],
               need_weights: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        return attention.attend(q, k, v, bias=bias, visible=visible, **self.attention_options(need_weights))

    def attend_one_query(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, visible: Optional[Tensor],
                         need_weights: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        """The attention of one new query per sequence (a decoding step): softmax without dropout by
        ``attention.softmax_one_query``, the other functions and dropout through ``attend``. Compared with the
        full forward in tests/unit/test_modules.py (test_incremental_equals_full) and test_decoding.py.

        Shapes: q: B x 1 x z; k: B x K x z; v: B x K x h; bias: 1 x K; visible: B x 1 x K or None; returns
        (B x 1 x h, weights B x 1 x K or None)."""
        if self.attention_activation != "softmax" or (self.training and self.attention_dropout > 0):
            out, weights = self.attend(q, k, v, bias, visible, need_weights=True)
        else:
            out, weights = attention.softmax_one_query(q, k, v, bias=bias, visible=visible, scaling=self.scaling)
        return out, (weights if need_weights else None)


def split_gates(projected: Tensor, embed_dim: int, zdim: int, hdim: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The update gate phi, the shared Z, the reset gate r and X' W_h from ``mx_proj`` of the EMA's output.
    Shapes: projected: B x L x (2 D + z + h); returns B x L x D, B x L x z, B x L x h, B x L x D."""
    # split_with_sizes: Tensor.split's Python wrapper costs more than the split in a decoding step
    phi, zr, hx = projected.split_with_sizes([embed_dim, zdim + hdim, embed_dim], dim=-1)
    z, r = F.silu(zr).split_with_sizes([zdim, hdim], dim=-1)
    return torch.sigmoid(phi), z, r, hx


def _cat_padding(first: Optional[Tensor], second: Optional[Tensor], first_length: int,
                 second_length: int) -> Optional[Tensor]:
    """Two padding masks one after the other (B x L1, B x L2 or None: no padding)."""
    if first is None and second is None:
        return None
    reference = first if first is not None else second
    first = reference.new_zeros(reference.size(0), first_length) if first is None else first
    second = reference.new_zeros(reference.size(0), second_length) if second is None else second
    return torch.cat([first, second], dim=1)


def _rows_with_room(rows: Tensor, room: int) -> Tensor:
    """A new buffer of ``room`` positions (dim 1) whose first ones are ``rows`` (room >= their number).
    Shapes: rows: B x K x ...; returns B x room x ..."""
    buffer = rows.new_empty(rows.size(0), room, *rows.shape[2:])
    buffer[:, :rows.size(1)] = rows
    return buffer


def _select_rows(buffer: Tensor, order: Tensor, filled: int) -> Tensor:
    """``buffer[order]`` of the same room, of which only the first ``filled`` positions are copied.
    Shapes: buffer: B x room x ...; order: B'; returns B' x room x ..."""
    rows = buffer[:, :filled]
    if rows.requires_grad and torch.is_grad_enabled():  # index_select's out= takes no autograd
        return _rows_with_room(rows.index_select(0, order), buffer.size(1))
    selected = buffer.new_empty(order.size(0), *buffer.shape[1:])
    torch.index_select(rows, 0, order, out=selected[:, :filled])
    return selected


class MovingAverageGatedAttention(GatedBlock):
    """One Mega block: X' = EMA(X); Z = SiLU(X' W_z); Q, K = kappa * Z + mu; V = act(X W_v);
    O = f(Q K^T + b_rel) V; gamma = SiLU(X' W_gamma); phi = sigmoid(X' W_phi);
    H = act(X' W_h + (gamma * O) U_h); Y = phi * H + (1 - phi) * X.

    With ``chunk_size`` c > 0 attention runs within consecutive chunks of c positions
    (Mega-chunk, linear in L); the sequence is padded to a multiple of c internally.
    ``causal`` makes both the EMA and attention left-to-right (decoders).

    Parameter names: ``kappa``/``mu`` are the paper's per-dimension scale and offset of
    Q and K (the official ``gamma``/``beta``); ``mx_proj`` computes [phi, Z, gamma, H]
    pre-activations from X' in one matmul, in the official order.
    """

    def __init__(self, cfg: MegaLayerConfig, *, causal: bool):
        super().__init__(cfg)
        self.hdim, self.ndim = cfg.hidden_dim, cfg.n_dim
        self.causal = causal
        self.chunk_size = cfg.chunk_size
        self.move = MultiDimensionalDampedEMA(cfg.embed_dim, ndim=cfg.n_dim, bidirectional=not causal,
                                              truncation=cfg.truncation, path=cfg.ema_path)
        self.v_proj = nn.Linear(cfg.embed_dim, cfg.hidden_dim)
        self.mx_proj = nn.Linear(cfg.embed_dim, cfg.z_dim + cfg.hidden_dim + 2 * cfg.embed_dim)
        self.h_proj = nn.Linear(cfg.hidden_dim, cfg.embed_dim)
        self.kappa = nn.Parameter(torch.empty(2, cfg.z_dim))
        self.mu = nn.Parameter(torch.empty(2, cfg.z_dim))
        self.rel_pos_bias = build_relative_positional_bias(cfg.rel_pos_bias, zdim=cfg.z_dim,
                                                           max_positions=cfg.bias_positions)
        self.reset_parameters()

    def reset_parameters(self):
        init_linear(self.v_proj, self.mx_proj, self.h_proj)
        nn.init.normal_(self.kappa, mean=0.0, std=0.02)
        nn.init.zeros_(self.mu)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None,
                incremental_state: Optional[IncrementalState] = None,
                need_weights: bool = False, right_padded: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        """Shapes: x: B x L x D; padding_mask: B x L, True at padding; returns (B x L x D,
        attention weights B x nc x c x c' if need_weights else None).

        With ``incremental_state`` (causal only) x holds the L newest positions: the EMA
        continues from its saved state and attention sees the saved keys of the current chunk.

        ``right_padded``: the caller knows that padding only follows each sequence's end. Causal
        attention then ignores the padding mask: a real query sees only earlier keys, all real
        (padded queries see padded keys too; their outputs reach no real position).
        """
        residual = x
        x = self.block_input(x, padding_mask)
        v = self.activation(self.v_proj(x))  # B x L x h
        if incremental_state is not None:
            if not self.causal:
                raise RuntimeError("incremental decoding needs a causal (decoder) layer")
            mx = self.move.forward_incremental(x, incremental_state, padding_mask)
        else:
            mx = self.move(x, padding_mask)  # B x L x D
        saved = None if incremental_state is None else self.get_incremental_state(incremental_state)
        phi, z, r, hx = split_gates(self.mx_proj(apply_dropout(self.dropout, mx)), self.embed_dim, self.zdim,
                                    self.hdim)
        mu_q, mu_k, kappa_q, kappa_k = self._query_key_affine(saved)
        q = torch.addcmul(mu_q, z, kappa_q)  # kappa * z + mu, B x L x z
        k = torch.addcmul(mu_k, z, kappa_k)
        v = apply_dropout(self.hidden_dropout, v)
        key_padding = None if self.causal and right_padded else padding_mask
        if incremental_state is not None:
            h, weights = self._attend_incremental(q, k, v, key_padding, saved, need_weights)
            self.set_incremental_state(incremental_state, saved)
        else:
            h, weights = self._attend_chunks(q, k, v, key_padding, need_weights)
        h = self.activation(hx + self.h_proj(h * r))  # B x L x D
        return self.gated_residual(residual, phi, h, padding_mask), weights

    def _query_key_affine(self, saved: Optional[Dict[str, Any]]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """(mu_q, mu_k, kappa_q, kappa_k), each z: views of the parameters, which a decoding without
        autograd makes once and keeps in its ``saved`` state (a tuple, which reordering leaves alone;
        views, so that they follow in-place updates of the parameters); with autograd, made at every
        call, so that each graph has its own."""
        if saved is None or torch.is_grad_enabled():
            return (*self.mu.unbind(), *self.kappa.unbind())
        if "query_key_affine" not in saved:
            saved["query_key_affine"] = (*self.mu.unbind(), *self.kappa.unbind())
        return saved["query_key_affine"]

    def _attend_chunks(self, q: Tensor, k: Tensor, v: Tensor, padding_mask: Optional[Tensor],
                       need_weights: bool, num_queries: Optional[int] = None) -> Tuple[Tensor, Optional[Tensor]]:
        """Block-diagonal attention over chunks (the dispatcher, ``attention.relative_attention``,
        chooses the kernel); the last ``num_queries`` outputs are returned. ``padding_mask`` (B x L,
        True at padding) hides keys.
        """
        bsz, length, _ = k.size()
        chunk = self.chunk_size if 0 < self.chunk_size < length else length
        pad = -length % chunk
        if pad:
            q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
            # the positions added at the end are hidden from bidirectional queries; causal
            # queries never see them
            if padding_mask is not None or not self.causal:
                if padding_mask is None:
                    padding_mask = k.new_zeros(bsz, length, dtype=torch.bool)
                padding_mask = F.pad(padding_mask, (0, pad), value=True)
        nc = (length + pad) // chunk
        out, weights = attention.relative_attention(
            q.view(bsz, nc, chunk, self.zdim), k.view(bsz, nc, chunk, self.zdim), v.view(bsz, nc, chunk, self.hdim),
            offsets=self.rel_pos_bias.offsets(chunk), causal=self.causal,
            key_padding=None if padding_mask is None else padding_mask.view(bsz, nc, chunk),
            **self.attention_options(need_weights))  # B x nc x c x h
        out = out.reshape(bsz, nc * chunk, self.hdim)[:, :length]  # B x L x h
        if num_queries is not None:
            out = out[:, length - num_queries:]
        return out, weights

    def _attend_rows(self, q: Tensor, k: Tensor, v: Tensor, offset_bias: Tensor, padding_mask: Optional[Tensor],
                     start: int, need_weights: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        """Queries ``start``..``start + Q - 1`` of every chunk attend to their chunk's c keys (the
        incremental path's last rows: ``attention.attention_rows``).

        Shapes: q: B x nc x Q x z; k: B x nc x c x z; v: B x nc x c x h; offset_bias: 2c - 1;
        padding_mask: B x nc * c; returns (B x nc x Q x h, weights B x nc x Q x c or None).
        """
        key_padding = None if padding_mask is None else padding_mask.view(k.shape[:3])
        return attention.attention_rows(q, k, v, offsets=offset_bias, key_padding=key_padding, causal=self.causal,
                                        first_query=start, **self.attention_options(need_weights))

    def _attend_incremental(self, q: Tensor, k: Tensor, v: Tensor, padding_mask: Optional[Tensor],
                            saved: Dict[str, Any], need_weights: bool) -> Tuple[Tensor, Optional[Tensor]]:
        """The new queries' attention to the kept and new keys; ``saved``: this block's decoding
        state (updated)."""
        num_new = q.size(1)
        k, v, padding_mask = self._keys_seen(saved, k, v, padding_mask)
        context = k.size(1)
        if num_new == 1:
            visible = None if padding_mask is None else ~padding_mask.unsqueeze(1)  # B x 1 x K
            return self.attend_one_query(q, k, v, self._newest_bias(saved, context), visible, need_weights)
        if 0 < self.chunk_size < context:
            # Several chunks: queries padded on the left to chunk-aligned positions.
            q = F.pad(q, (0, 0, context - num_new, 0))
            return self._attend_chunks(q, k, v, padding_mask, need_weights, num_queries=num_new)
        # One block: the new queries are the last rows of the context's causal attention.
        offset_bias = self.rel_pos_bias.offsets(context)  # 2 context - 1
        out, weights = self._attend_rows(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), offset_bias, padding_mask,
                                         context - num_new, need_weights)
        return out.squeeze(1), (None if weights is None else weights.squeeze(1))

    def _keys_seen(self, saved: Dict[str, Any], k: Tensor, v: Tensor,
                   padding_mask: Optional[Tensor]) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """The keys, values and key padding that the new queries see: the kept ones followed by the new
        ones; ``saved`` is updated to keep those of the chunk still being filled (all of them for full
        attention).

        They are kept in buffers with room for the whole chunk (for full attention, for twice the keys
        kept), ``kept`` rows filled: a decoding step without autograd writes its key into the next
        row, where concatenating would copy all of them, and beam search's reordering copies only
        the filled rows (``reorder_incremental_state``); so one state dict serves one decoding. Several
        new positions, a full buffer, or autograd (whose graph may hold an earlier step's keys) take
        new buffers instead.

        Shapes: k: B x L x z; v: B x L x h; padding_mask: B x L or None; returns B x K x z, B x K x h
        and B x K or None, K = kept + L.
        """
        kept, num_new = saved.get("kept", 0), k.size(1)
        context = kept + num_new
        keys, values, padding = saved.get("prev_key"), saved.get("prev_value"), saved.get("prev_padding_mask")
        chunked = self.chunk_size > 0
        if (num_new == 1 and keys is not None and kept < keys.size(1) and not torch.is_grad_enabled()
                and (padding is not None or padding_mask is None)):
            keys[:, kept:context] = k
            values[:, kept:context] = v
            if padding is not None:
                padding[:, kept:context] = False if padding_mask is None else padding_mask
            k, v = keys[:, :context], values[:, :context]
            padding_mask = None if padding is None else padding[:, :context]
        else:
            if kept:
                padding_mask = _cat_padding(None if padding is None else padding[:, :kept], padding_mask, kept, num_new)
                k, v = torch.cat([keys[:, :kept], k], dim=1), torch.cat([values[:, :kept], v], dim=1)
            keep = context % self.chunk_size if chunked else context
            room = self.chunk_size if chunked else 2 * context
            keys, values = (_rows_with_room(t[:, context - keep:], room) for t in (k, v))
            padding = None if padding_mask is None else _rows_with_room(padding_mask[:, context - keep:], room)
        saved.update(prev_key=keys, prev_value=values, prev_padding_mask=padding,
                     kept=context % self.chunk_size if chunked else context)
        return k, v, padding_mask

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor):
        """Beam search's reordering of the batch: only the filled rows of the key buffers are copied."""
        saved = incremental_state.get(self._state_key())
        if saved:
            kept = saved["kept"]
            incremental_state[self._state_key()] = dict(saved, **{
                name: _select_rows(saved[name], new_order, kept)
                for name in ("prev_key", "prev_value", "prev_padding_mask") if saved[name] is not None})
        return incremental_state

    def _newest_bias(self, saved: Dict[str, Any], context: int) -> Tensor:
        """The relative bias of the newest of ``context`` positions to each of them, 1 x context (offsets
        -(context - 1)..0). Mega-chunk's decoding without autograd makes the row of a whole chunk once
        and keeps it in ``saved``, each step slicing its last ``context`` entries (the bias depends on
        the offset alone); otherwise made at every call."""
        if self.chunk_size <= 0 or torch.is_grad_enabled():
            return self.rel_pos_bias.offsets(context)[:context].unsqueeze(0)
        row = saved.get("newest_bias")
        if row is None:
            row = saved["newest_bias"] = self.rel_pos_bias.offsets(self.chunk_size)[:self.chunk_size].unsqueeze(0)
        return row[:, self.chunk_size - context:]

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, zdim={self.zdim}, hdim={self.hdim}, ndim={self.ndim}, "
                f"causal={self.causal}, chunk_size={self.chunk_size}, attention={self.attention_activation}, "
                f"prenorm={self.prenorm}")
