"""The options of a stack of Mega layers: one dataclass that every module takes.

Field names are the ones of the fairseq model configs (``mega_fairseq/models/``), where the
fields marked ``per_stack`` carry an ``encoder_`` or ``decoder_`` prefix and the others are shared
by both stacks of a model; ``models/mega_config.py`` derives those configs from this class, so
that each option, its default and its help text are written here only.
"""

from dataclasses import dataclass, field, fields
from typing import Optional

from .activations import ACTIVATIONS
from .attention import ATTENTION_FUNCTIONS
from .ema import EMA_PATHS
from .norm import NORM_TYPES
from .positional_bias import REL_POS_BIAS_TYPES


def option(default, help_text: str, *, per_stack: bool = False, choices=None, same_as: Optional[str] = None):
    """A field with its help text; ``per_stack``: prefixed by encoder_/decoder_ in model configs;
    ``same_as``: None means the value of that field."""
    return field(default=default, metadata={"help": help_text, "per_stack": per_stack, "choices": choices,
                                            "same_as": same_as})


class MegaConfigError(ValueError):
    """A bad layer option: ``field`` names it, so that callers can name their own flag instead."""

    def __init__(self, field_name: str, problem: str):
        super().__init__(f"{field_name} {problem}")
        self.field = field_name
        self.problem = problem


@dataclass
class MegaLayerConfig:
    """Sizes and options of Mega layers (paper symbols in brackets)."""

    layers: int = option(6, "number of Mega layers", per_stack=True)
    embed_dim: int = option(512, "model dimension (d)", per_stack=True)
    hidden_dim: int = option(1024, "attention value dimension (v, the paper's hidden dim)", per_stack=True)
    ffn_embed_dim: Optional[int] = option(
        None, "hidden size of the normalised FFN; 0 removes the FFN (default: the hidden dim)", per_stack=True,
        same_as="hidden_dim")
    z_dim: int = option(128, "dimension of the shared representation, queries and keys (z)", per_stack=True)
    n_dim: int = option(16, "EMA expansion dimension (h in the paper's equations, N in its text)", per_stack=True)
    chunk_size: int = option(-1, "Mega-chunk size c (attention within chunks of c tokens); -1 for full attention",
                             per_stack=True)
    truncation_length: int = option(0, "keep only the first N taps of the EMA kernel; 0 keeps all")
    ema_path: str = option("auto", "EMA algorithm: 'fft' (convolution with the whole kernel by FFT, O(L log L)), "
                                   "'chunk' (chunk by chunk with the state carried across chunks, O(L) in matmuls; "
                                   "untruncated EMAs only) or 'auto' (the faster for the length and device; a "
                                   "truncated kernel always takes the FFT)", choices=EMA_PATHS)
    attention_activation_fn: str = option("softmax", "attention function", choices=ATTENTION_FUNCTIONS)
    activation_fn: str = option("silu", "activation function", choices=tuple(ACTIVATIONS))
    dropout: float = option(0.1, "dropout on embeddings and block outputs")
    attention_dropout: float = option(0.0, "dropout on attention weights")
    hidden_dropout: float = option(0.0, "dropout on attention values")
    activation_dropout: float = option(0.0, "dropout inside the FFN")
    feature_dropout: bool = option(False, "drop whole channels instead of elements")
    normalization_type: str = option("layernorm", "normalisation layer", choices=NORM_TYPES)
    normalize_before: bool = option(False, "prenorm layers (and a final norm) instead of postnorm")
    rel_pos_bias: str = option("simple", "relative position bias", choices=REL_POS_BIAS_TYPES)
    max_positions: int = option(1024, "positions covered by the relative bias of full attention")
    max_source_positions: int = option(0, "source positions covered by the relative bias of cross-attention, "
                                          "which spans max(max_positions, max_source_positions) as in the "
                                          "official code (0: max_positions)")

    def __post_init__(self):
        if self.ffn_embed_dim is None:
            self.ffn_embed_dim = self.hidden_dim
        for name in ("layers", "embed_dim", "hidden_dim", "z_dim", "n_dim", "max_positions"):
            if getattr(self, name) <= 0:
                raise MegaConfigError(name, f"must be positive, got {getattr(self, name)}")
        if self.ffn_embed_dim < 0:
            raise MegaConfigError("ffn_embed_dim", f"must be positive (or 0: no FFN), got {self.ffn_embed_dim}")
        if self.chunk_size == 0:
            raise MegaConfigError("chunk_size", "must be positive (chunked attention) or negative (full attention), "
                                                "got 0")
        if self.ema_path == "chunk" and self.truncation is not None:
            raise MegaConfigError("ema_path", "chunk needs an untruncated EMA (truncation_length 0): a truncated "
                                              "kernel has no recurrence form")
        for config_field in fields(self):
            choices = config_field.metadata["choices"]
            value = getattr(self, config_field.name)
            if choices is not None and value not in choices:
                raise MegaConfigError(config_field.name, f"{value!r} is not a known {config_field.metadata['help']}; "
                                                         f"choose one of {', '.join(choices)}")

    @property
    def truncation(self) -> Optional[int]:
        """EMA kernel taps kept, or None for all (0 and negative values: the official recipes' spelling)."""
        return self.truncation_length if self.truncation_length > 0 else None

    @property
    def bias_positions(self) -> int:
        """Positions of a self-attention relative bias: the chunk, or every position."""
        return self.chunk_size if self.chunk_size > 0 else self.max_positions
