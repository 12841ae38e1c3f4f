"""Parameter names of the official Mega code (facebookresearch/mega) mapped to ours.

The official EMA calls the paper's alpha ``delta``, the paper's delta ``alpha`` and eta
``gamma``, and stores them as D x N x 1; the gated attention calls the per-dimension
scale and offset of Q and K ``gamma`` and ``beta`` (our ``kappa`` and ``mu``). Every other
name is the same.
"""

import re
from typing import Dict

from torch import Tensor

_EMA = {"delta": "alpha", "alpha": "delta", "beta": "beta", "gamma": "eta", "omega": "omega"}
_ATTENTION = {"gamma": "kappa", "beta": "mu"}
# buffers the official modules register that carry no weights
_DROPPED = re.compile(r"(^|\.)(version|_float_tensor)$")


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
    return converted
