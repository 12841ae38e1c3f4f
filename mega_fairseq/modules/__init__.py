"""Pure-torch Mega building blocks (no fairseq dependency)."""

from .attention import ATTENTION_FUNCTIONS, attend, attention_weights
from .config import MegaLayerConfig
from .cross_attention import GatedCrossAttention
from .ema import MultiDimensionalDampedEMA, ema_reference
from .embedding import RealValuedEmbedding, TokenEmbedding
from .feed_forward import NormalizedFeedForwardNetwork
from .gated_attention import MovingAverageGatedAttention
from .layers import MegaLayer
from .norm import NORM_TYPES, SequenceNorm
from .pooling import POOLING_TYPES, pool
from .positional_bias import REL_POS_BIAS_TYPES
from .stack import MegaStack, StackOutput

__all__ = [
    "ATTENTION_FUNCTIONS", "NORM_TYPES", "POOLING_TYPES", "REL_POS_BIAS_TYPES", "GatedCrossAttention", "MegaLayer",
    "MegaLayerConfig", "MegaStack", "MovingAverageGatedAttention", "MultiDimensionalDampedEMA",
    "NormalizedFeedForwardNetwork", "RealValuedEmbedding", "SequenceNorm", "StackOutput", "TokenEmbedding",
    "attend", "attention_weights", "ema_reference", "pool",
]
