"""The Mega decoder shared by language models and (with cross-attention) translation models."""

from typing import Dict, Optional

from fairseq.models import FairseqIncrementalDecoder
from fairseq.modules import AdaptiveSoftmax
from fairseq.utils import eval_str_list, safe_getattr
from torch import Tensor, nn

from ..modules import MegaStack, TokenEmbedding
from ..modules.incremental import IncrementalState
from .mega_encoder import EncoderOut, in_source_order
from .official_names import refuse_official_names

def build_embedding_table(dictionary, dim: int) -> nn.Embedding:
    """A token embedding table initialised as the official code's: N(0, 1/dim), zero at padding."""
    table = nn.Embedding(len(dictionary), dim, padding_idx=dictionary.pad())
    nn.init.normal_(table.weight, mean=0.0, std=dim ** -0.5)
    nn.init.zeros_(table.weight[dictionary.pad()])
    return table


def build_token_embedding(cfg, table: nn.Module, embed_dim: int, input_dim: int) -> TokenEmbedding:
    """The token embedding of a model config with ``TokenEmbeddingOptions``: sqrt(d) scale unless
    --no-scale-embedding, the layer norm with --normalize-embedding, embedding dropout."""
    if cfg.normalize_embedding and cfg.normalize_before:
        raise ValueError("--normalize-embedding and --normalize-before are exclusive")
    return TokenEmbedding(table, embed_dim, input_dim=input_dim, scale=not cfg.no_scale_embedding,
                          norm_type=str(cfg.normalization_type) if cfg.normalize_embedding else None,
                          dropout=cfg.dropout)


def build_output_layer(cfg, dictionary, embed_tokens: nn.Module, embed_dim: int):
    """(output projection, adaptive softmax): exactly one is not None.

    ``--adaptive-softmax-cutoff`` gives fairseq's adaptive softmax (tied to an adaptive input with
    ``--tie-adaptive-weights``); ``--share-decoder-input-output-embed`` ties the projection to
    the input embedding; otherwise a projection of its own.
    """
    cutoff = safe_getattr(cfg, "adaptive_softmax_cutoff", None)
    if cutoff is not None:
        return None, AdaptiveSoftmax(
            len(dictionary), embed_dim, eval_str_list(cutoff, type=int), dropout=cfg.adaptive_softmax_dropout,
            adaptive_inputs=embed_tokens if cfg.tie_adaptive_weights else None,
            factor=cfg.adaptive_softmax_factor, tie_proj=cfg.tie_adaptive_proj)
    if cfg.share_decoder_input_output_embed:
        projection = nn.Linear(embed_tokens.weight.size(1), embed_tokens.weight.size(0), bias=False)
        projection.weight = embed_tokens.weight
        return projection, None
    projection = nn.Linear(embed_dim, len(dictionary), bias=False)
    nn.init.normal_(projection.weight, mean=0.0, std=embed_dim ** -0.5)
    return projection, None


class MegaDecoder(FairseqIncrementalDecoder):
    """Token embedding, a causal :class:`MegaStack` (with gated cross-attention over an encoder's
    output in translation models), and an output layer.

    Incremental decoding feeds only the positions not seen before; each layer keeps the
    EMA state (B x D x N) and the keys and values of the chunk being filled.

    ``first_segment`` (given by the stream evaluation data of ``mega_language_modeling``)
    switches to stream mode: the state is kept across calls, so consecutive segments of
    long streams are scored with the whole history, as one long forward pass would be.

    Alignments: with ``need_attn`` (fairseq sets it for --print-alignment through
    ``make_generation_fast_``; translation models trained with --load-alignments set it) the
    output's ``"attn"`` holds the cross-attention weights of layer ``alignment_layer`` (B x T x S,
    in the order of the source as given: see :func:`in_source_order`), as fairseq's transformer
    gives them; otherwise ``[None]``, and no layer computes weights.

    ``left_pad``: whether ``prev_output_tokens`` come left-padded (translation's
    --left-pad-target); fairseq's collaters pad them on the right by default, and then causal
    attention needs no padding mask (see :class:`MegaStack`).
    """

    def __init__(self, dictionary, embedding: TokenEmbedding, stack: MegaStack, *,
                 output_projection: Optional[nn.Module], adaptive_softmax: Optional[nn.Module],
                 max_target_positions: int, alignment_layer: int = -1, left_pad: bool = False):
        super().__init__(dictionary)
        if not stack.causal:
            raise ValueError("a decoder needs a causal MegaStack")
        layers = len(stack.layers)
        if not -layers <= alignment_layer < layers:
            raise ValueError(f"--alignment-layer {alignment_layer} is not a layer of this {layers}-layer decoder: "
                             f"give 0..{layers - 1}, or -1 for the last")
        self.embedding = embedding
        self.stack = stack
        self.output_projection = output_projection
        self.adaptive_softmax = adaptive_softmax
        self.padding_idx = dictionary.pad()
        self.chunk_size = stack.cfg.chunk_size
        self.max_target_positions = max_target_positions
        self.alignment_layer = alignment_layer
        self.need_attn = False
        self.left_pad = left_pad
        self._stream_state: IncrementalState = {}

    @property
    def embed_tokens(self) -> nn.Module:
        return self.embedding.embed_tokens

    def forward(self, prev_output_tokens: Tensor, encoder_out: Optional[EncoderOut] = None,
                incremental_state: Optional[IncrementalState] = None, features_only: bool = False,
                first_segment: Optional[Tensor] = None, **unused):
        x, extra = self.extract_features(prev_output_tokens, encoder_out, incremental_state, first_segment)
        if not features_only:
            x = self.output_layer(x)
        return x, extra

    def extract_features(self, prev_output_tokens: Tensor, encoder_out: Optional[EncoderOut] = None,
                         incremental_state: Optional[IncrementalState] = None,
                         first_segment: Optional[Tensor] = None, **unused):
        """Shapes: prev_output_tokens: B x T; returns (B x T' x D, {"inner_states", "attn"}) where
        T' = T, or the number of positions not yet seen in incremental decoding, and "attn" is
        [B x T' x S weights] with ``need_attn`` and an encoder output, else [None]."""
        if first_segment is not None:
            if incremental_state is not None:
                raise ValueError("stream evaluation and incremental decoding cannot be combined")
            if bool(first_segment.any()) and not bool(first_segment.all()):
                raise ValueError("every stream of a batch must be at the same segment")
            if bool(first_segment.all()):
                self._stream_state = {}
            incremental_state = self._stream_state
        elif incremental_state is not None:
            # positions already decoded: a Python int (the same for every sequence), no device sync
            start = self.get_incremental_state(incremental_state, "seen") or 0
            prev_output_tokens = prev_output_tokens[:, start:]
            self.set_incremental_state(incremental_state, "seen", start + prev_output_tokens.size(1))

        memory = memory_padding_mask = None
        if encoder_out is not None and len(encoder_out["encoder_out"]) > 0:
            memory = encoder_out["encoder_out"][0]  # B x S x D
            if len(encoder_out["encoder_padding_mask"]) > 0:
                memory_padding_mask = encoder_out["encoder_padding_mask"][0]
        weights_layer = self.alignment_layer if self.need_attn and memory is not None else None
        out = self.stack(self.embedding(prev_output_tokens), prev_output_tokens.eq(self.padding_idx), memory=memory,
                         memory_padding_mask=memory_padding_mask, incremental_state=incremental_state,
                         weights_layer=weights_layer, right_padded=not self.left_pad)
        if first_segment is not None:  # carry values, not the graph, into the next segment
            for saved in self._stream_state.values():
                for key, value in saved.items():
                    if isinstance(value, Tensor):
                        saved[key] = value.detach()
        attn = None if out.attn is None else in_source_order(out.attn, encoder_out)
        return out.out, {"inner_states": out.inner_states, "attn": [attn]}

    def output_layer(self, features: Tensor) -> Tensor:
        if self.adaptive_softmax is not None:
            return features
        return self.output_projection(features)

    def max_positions(self) -> int:
        return self.max_target_positions

    def make_generation_fast_(self, need_attn: bool = False, **kwargs):
        """fairseq's preparation for generation (``prepare_for_inference_``): ``need_attn`` is
        --print-alignment."""
        self.need_attn = bool(need_attn)

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor):
        pass  # the count of decoded positions is shared by all sequences; the layers reorder their own state

    def upgrade_state_dict_named(self, state_dict: Dict[str, Tensor], name: str):
        refuse_official_names(state_dict, name)
        return state_dict

