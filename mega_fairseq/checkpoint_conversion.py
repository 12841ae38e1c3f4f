"""Parameter names of the official Mega code (facebookresearch/mega) mapped to ours.

The official EMA calls the paper's alpha ``delta``, the paper's delta ``alpha`` and eta
``gamma``, and stores them as D x N x 1; the gated attention calls the per-dimension
scale and offset of Q and K ``gamma`` and ``beta`` (our ``kappa`` and ``mu``). The official
encoders and decoders hold their embedding, layers and final norm directly
(``decoder.layers.N``), as this plugin's decoder did before it was built from an embedding, a
``MegaStack`` and an output layer (``decoder.stack.layers.N``): ``OFFICIAL_LAYOUT`` maps those
paths, for official checkpoints and for checkpoints of the earlier layout alike. Every other
name is the same.
"""

import re
from typing import Dict

from torch import Tensor

_EMA = {"delta": "alpha", "alpha": "delta", "beta": "beta", "gamma": "eta", "omega": "omega"}
_ATTENTION = {"gamma": "kappa", "beta": "mu"}
# buffers the official modules register that carry no weights
_DROPPED = re.compile(r"(^|\.)(version|_float_tensor)$")

# official (and earlier) path inside an encoder or decoder -> path now
OFFICIAL_LAYOUT = {
    "embed_tokens.": "embedding.embed_tokens.",
    "project_in_dim.": "embedding.project_in_dim.",
    "embed_norm.": "embedding.norm.",
    "layers.": "stack.layers.",
    "final_norm.": "stack.final_norm.",
}


def rename_prefixes(state: Dict[str, Tensor], module: str, renames: Dict[str, str]) -> Dict[str, Tensor]:
    """Renames, in place, the keys under the module path ``module`` that start with an old
    prefix of ``renames``; returns ``state``."""
    prefix = f"{module}." if module else ""
    for key in list(state):
        if not key.startswith(prefix):
            continue
        local = key[len(prefix):]
        for old, new in renames.items():
            if local.startswith(old):
                state[prefix + new + local[len(old):]] = state.pop(key)
                break
    return state


def convert_official_state_dict(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """An official Mega state dict (any model: LM, MT, LRA) with our parameter names."""
    converted = {}
    for name, value in state.items():
        if _DROPPED.search(name):
            continue
        prefix, _, leaf = name.rpartition(".")
        if prefix.endswith(".move") and leaf in _EMA:
            name = f"{prefix}.{_EMA[leaf]}"
            value = value.squeeze(-1) if value.dim() == 3 else value
        elif prefix.endswith("mega_layer") and leaf in _ATTENTION:
            name = f"{prefix}.{_ATTENTION[leaf]}"
        converted[name] = value
    for module in ("encoder", "decoder"):
        rename_prefixes(converted, module, OFFICIAL_LAYOUT)
    return converted
