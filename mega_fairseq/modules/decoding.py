"""One decoding step of a whole causal :class:`~mega_fairseq.modules.stack.MegaStack` as one flat function.

A step of incremental decoding at batch 1 is about a hundred small ops, and calling them through
modules (``nn.Module.__call__``, attribute reads of submodules and parameters, the general path's
checks, dispatch and state copies) costs more than the ops. :class:`StackStep` reads every tensor that
a step needs once per decoding and then runs the general path's ops on them directly, writing each
block's new key and value into the rows of its kept buffers and its EMA state into its slot of the
incremental state. It takes the step where the general path would compute the same values with the same
ops (``applies``): one new position, no padding or padding after each sequence's end (right padding:
then, as in the layers, it enters neither the EMA nor the output), no autograd, evaluation, no autocast, float32 or
float64, softmax attention (in chunks or over the whole context) and an untruncated EMA, after a first
call through the general path made the kept buffers; otherwise the caller runs the general path. The
gated cross-attention of translation decoders runs flat too, over the encoder's keys and values that its
first step kept. Compared with the full forward in tests/unit/test_decoding.py, across chunk boundaries,
beam reorderings and every norm, and bit for bit with the layers' path.
"""

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import attention
from .cross_attention import GatedCrossAttention
from .ema import EMACoefficients, one_step
from .gated_attention import MovingAverageGatedAttention, split_gates
from .incremental import IncrementalState
from .norm import evaluation_function
from .positional_bias import SimpleRelativePositionalBias


class _BlockTensors(NamedTuple):
    """What one Mega layer's step reads, for one decoding (parameters as they are: in-place updates show)."""

    block_key: str  # the block's slot in the incremental state (keys, values, kept)
    ema_key: str  # its EMA's slot (the B x D x N state)
    prenorm: bool
    norm: Callable[[Tensor], Tensor]
    activation: Callable[[Tensor], Tensor]
    v_proj: Tuple[Tensor, Tensor]  # weight, bias
    mx_proj: Tuple[Tensor, Tensor]
    h_proj: Tuple[Tensor, Tensor]
    sizes: List[int]  # embed_dim, z_dim, hidden_dim
    coefficients: EMACoefficients
    omega: Tensor
    query_key_affine: tuple  # mu_q, mu_k, kappa_q, kappa_k
    scaling: float
    chunk_size: int  # > 0: Mega-chunk; otherwise attention over the whole context
    rel_pos_bias: nn.Module
    newest_bias: Optional[Tensor]  # 1 x R: the bias of offsets -(R - 1)..0 (R: the chunk, or the simple bias's
    # positions), or None (a rotary bias over the whole context: made at each step, as the layers make it)
    cross_attn: Optional["_CrossTensors"]
    ffn: Optional[tuple]  # (norm, fc1, fc2, activation, prenorm) or None


class _CrossTensors(NamedTuple):
    """What a layer's gated cross-attention reads (see :class:`_BlockTensors`)."""

    key: str  # its slot in the incremental state (the encoder's keys and values, the steps taken)
    prenorm: bool
    norm: Callable[[Tensor], Tensor]
    activation: Callable[[Tensor], Tensor]
    q_proj: Tuple[Tensor, Tensor]
    h_proj: Tuple[Tensor, Tensor]
    sizes: List[int]  # embed_dim, embed_dim, z_dim: [phi, r, q]
    scaling: float
    rel_pos_bias: nn.Module
    bias_table: Optional[Tensor]  # a simple bias's table, or None (rotary)


def supports(stack: nn.Module) -> bool:
    """Whether every block of ``stack`` is of the kind :class:`StackStep` computes: causal softmax attention with
    an untruncated EMA, and softmax cross-attention (what ``applies`` adds is checked at every step)."""
    return stack.causal and all(
        isinstance(layer.mega_layer, MovingAverageGatedAttention) and layer.mega_layer.attention_activation == "softmax"
        and layer.mega_layer.move.truncation is None
        and (layer.cross_attn is None or (isinstance(layer.cross_attn, GatedCrossAttention)
                                          and layer.cross_attn.attention_activation == "softmax"))
        for layer in stack.layers)


def _linear(module: nn.Linear) -> Tuple[Tensor, Tensor]:
    return module.weight, module.bias


def _simple_table(bias: nn.Module) -> Optional[Tensor]:
    return bias.rel_pos_bias if isinstance(bias, SimpleRelativePositionalBias) else None


def _block_tensors(layer: nn.Module, dtype: torch.dtype, device: torch.device) -> _BlockTensors:
    block = layer.mega_layer
    # the newest position's bias row is a slice of one row of R (a view of a simple bias's table): the chunk's,
    # or, over the whole context, the simple bias's positions; a rotary bias over the whole context has none
    row = block.chunk_size if block.chunk_size > 0 else getattr(block.rel_pos_bias, "max_positions", None)
    with torch.no_grad():
        coefficients = EMACoefficients(*(t.to(dtype) for t in block.move.coefficients()))
        newest_bias = None if row is None else block.rel_pos_bias.offsets(row)[:row].unsqueeze(0).to(dtype)
    nffn = layer.nffn
    ffn = None if nffn is None else (evaluation_function(nffn.norm, dtype, device), _linear(nffn.fc1),
                                     _linear(nffn.fc2), nffn.activation, nffn.prenorm)
    cross = layer.cross_attn
    cross = None if cross is None else _CrossTensors(
        cross._state_key(), cross.prenorm, evaluation_function(cross.norm, dtype, device), cross.activation,
        _linear(cross.q_proj), _linear(cross.h_proj), [cross.embed_dim, cross.embed_dim, cross.zdim], cross.scaling,
        cross.rel_pos_bias, _simple_table(cross.rel_pos_bias))
    return _BlockTensors(
        block._state_key(), block.move._state_key(), block.prenorm, evaluation_function(block.norm, dtype, device),
        block.activation, _linear(block.v_proj), _linear(block.mx_proj), _linear(block.h_proj),
        [block.embed_dim, block.zdim, block.hdim], coefficients, block.move.omega,
        (*block.mu.unbind(), *block.kappa.unbind()), block.scaling, block.chunk_size, block.rel_pos_bias,
        newest_bias, cross, ffn)


class StackStep:
    """The decoding step of ``stack`` (a causal MegaStack for which ``supports`` holds) for one decoding, its
    tensors read for ``dtype`` and ``device``; kept by the stack in the decoding's incremental state."""

    def __init__(self, stack: nn.Module, dtype: torch.dtype, device: torch.device):
        self.dtype = dtype
        self.blocks = [_block_tensors(layer, dtype, device) for layer in stack.layers]
        self.final_norm = None if stack.final_norm is None else evaluation_function(stack.final_norm, dtype, device)

    def applies(self, x: Tensor, incremental_state: IncrementalState, memory: Optional[Tensor]) -> bool:
        """Whether this step (x: B x 1 x D) continues a decoding whose kept buffers the general path made,
        with room for the new key, without padding kept, in this step's dtype, and, with cross-attention,
        with the encoder's keys kept and within the bias's positions (what the caller checked: no autograd,
        evaluation, no padding or right padding, one position)."""
        if x.dtype != self.dtype or torch.is_autocast_enabled(x.device.type):
            return False
        for block in self.blocks:
            saved, ema_saved = incremental_state.get(block.block_key), incremental_state.get(block.ema_key)
            if (saved is None or ema_saved is None or saved.get("prev_key") is None
                    or saved["prev_padding_mask"] is not None or saved["prev_key"].dtype != x.dtype
                    or saved["kept"] >= saved["prev_key"].size(1)
                    or (block.newest_bias is not None and saved["kept"] >= block.newest_bias.size(1))
                    or ema_saved.get("ema_state") is None or ema_saved["ema_state"].dtype != x.dtype):
                return False
            cross = block.cross_attn
            if cross is not None:
                kept = incremental_state.get(cross.key)
                if memory is None or kept is None or "key" not in kept or (
                        cross.bias_table is not None
                        and max(kept["steps"] + 1, memory.size(1)) > cross.rel_pos_bias.max_positions):
                    return False
        return True

    def __call__(self, x: Tensor, incremental_state: IncrementalState, memory: Optional[Tensor],
                 memory_padding_mask: Optional[Tensor], padding_mask: Optional[Tensor] = None
                 ) -> Tuple[Tensor, List[Tensor]]:
        """The stack's output for the newest position, its state updated in place, and the inner states (the
        input and each layer's output). ``padding_mask``: True where the new position follows its sequence's
        end (right padding; causal attention then needs no key mask, and no device read is made: the padded
        rows are masked as the layers mask them). Shapes: x: B x 1 x D; padding_mask: B x 1 or None; returns
        B x 1 x D and [B x 1 x D]."""
        padding = None if padding_mask is None else padding_mask.unsqueeze(-1)  # B x 1 x 1
        if padding is not None:
            x = x.masked_fill(padding, 0.0)
        inner_states = [x]
        for block in self.blocks:
            x = _gated_attention_step(block, x, incremental_state[block.block_key], incremental_state[block.ema_key],
                                      padding)
            if block.cross_attn is not None:
                x = _cross_attention_step(block.cross_attn, x, incremental_state[block.cross_attn.key],
                                          memory_padding_mask)
            if block.ffn is not None:
                x = _feed_forward_step(block.ffn, x)
            inner_states.append(x)
        out = x if self.final_norm is None else self.final_norm(x)
        return (out if padding is None else out.masked_fill(padding, 0.0)), inner_states


def _gated_attention_step(block: _BlockTensors, x: Tensor, saved: Dict[str, Any], ema_saved: Dict[str, Any],
                          padding: Optional[Tensor] = None) -> Tensor:
    """``MovingAverageGatedAttention.forward`` of one position: the same ops as its incremental path (the EMA's
    ``one_step``, ``split_gates``, ``_keys_seen``'s write into the buffer rows, ``softmax_one_query``'s ops, here
    written out: the call's dtype and autocast checks cost 6% of a step at batch 1);
    ``padding`` (B x 1 x 1, right padding) is hidden from the EMA.
    Shapes: x: B x 1 x D; returns B x 1 x D."""
    residual = x
    x = block.norm(x) if block.prenorm else x
    activation = block.activation
    v = activation(F.linear(x, *block.v_proj))  # B x 1 x h
    signal = x if padding is None else x.masked_fill(padding, 0.0)
    mx, ema_saved["ema_state"] = one_step(signal, x, ema_saved["ema_state"], block.coefficients, block.omega)
    phi, z, r, hx = split_gates(F.linear(mx, *block.mx_proj), *block.sizes)
    mu_q, mu_k, kappa_q, kappa_k = block.query_key_affine
    kept = saved["kept"]
    context = kept + 1
    keys, values = saved["prev_key"], saved["prev_value"]
    torch.addcmul(mu_k, z, kappa_k, out=keys[:, kept:context])  # the new key, into its buffer row
    values[:, kept:context] = v
    saved["kept"] = context % block.chunk_size if block.chunk_size > 0 else context
    bias = block.newest_bias
    if bias is None:  # a rotary bias over the whole context
        bias = block.rel_pos_bias.offsets(context)[:context].unsqueeze(0).to(keys.dtype)
    scores = torch.baddbmm(bias[:, bias.size(1) - context:], torch.addcmul(mu_q, z, kappa_q),
                           keys[:, :context].transpose(1, 2), alpha=block.scaling)  # B x 1 x K
    h = torch.bmm(torch.softmax(scores, dim=-1), values[:, :context])  # B x 1 x h
    h = activation(hx + F.linear(h * r, *block.h_proj))
    out = torch.addcmul(residual, phi, h - residual)
    return out if block.prenorm else block.norm(out)


def _cross_attention_step(cross: _CrossTensors, query: Tensor, saved: Dict[str, Any],
                          memory_padding_mask: Optional[Tensor]) -> Tensor:
    """``GatedCrossAttention.forward`` of one position over the kept encoder keys and values: the same ops (the
    bias row read from a simple bias's table, ``attention.softmax_one_query``).
    Shapes: query: B x 1 x D; memory_padding_mask: B x S; returns B x 1 x D."""
    first = saved["steps"]
    saved["steps"] = first + 1
    x = cross.norm(query) if cross.prenorm else query
    phi, r, q = F.linear(x, *cross.q_proj).split_with_sizes(cross.sizes, dim=-1)
    k, v = saved["key"], saved["value"]
    src_len = k.size(1)
    if cross.bias_table is not None:  # b[i, j] = table[j - i + P - 1] for i = first, j < src_len
        start = cross.rel_pos_bias.max_positions - 1 - first
        bias = cross.bias_table[start:start + src_len].unsqueeze(0)
    else:
        positions = torch.arange(first, first + 1, device=q.device)
        bias = cross.rel_pos_bias(positions, max(first + 1, src_len))[:, :src_len]
    visible = None if memory_padding_mask is None else ~memory_padding_mask.unsqueeze(1)
    h, _ = attention.softmax_one_query(q, k, v, bias=bias.to(q.dtype), visible=visible, scaling=cross.scaling)
    h = cross.activation(F.linear(h * F.silu(r), *cross.h_proj))
    out = torch.addcmul(query, torch.sigmoid(phi), h - query)
    return out if cross.prenorm else cross.norm(out)


def _feed_forward_step(ffn: tuple, x: Tensor) -> Tensor:
    """``NormalizedFeedForwardNetwork.forward`` in evaluation. Shapes: x: B x 1 x D; returns B x 1 x D."""
    norm, fc1, fc2, activation, prenorm = ffn
    y = F.linear(activation(F.linear(norm(x) if prenorm else x, *fc1)), *fc2) + x
    return y if prenorm else norm(y)
