"""Pure-torch Mega building blocks (no fairseq dependency)."""

from .attention import ATTENTION_FUNCTIONS, attend, attention_weights
from .cross_attention import GatedCrossAttention
from .ema import MultiDimensionalDampedEMA, ema_reference
from .feed_forward import NormalizedFeedForwardNetwork
from .gated_attention import MovingAverageGatedAttention
from .layers import MegaLayer
from .norm import NORM_TYPES, SequenceNorm
from .positional_bias import REL_POS_BIAS_TYPES

__all__ = [
    "ATTENTION_FUNCTIONS", "NORM_TYPES", "REL_POS_BIAS_TYPES", "GatedCrossAttention", "MegaLayer",
    "MovingAverageGatedAttention", "MultiDimensionalDampedEMA", "NormalizedFeedForwardNetwork", "SequenceNorm",
    "attend", "attention_weights", "ema_reference",
]
