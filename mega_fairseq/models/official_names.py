"""The parameter names of the official Mega code (facebookresearch/mega) and ours.

Layers (every family). The official EMA calls the paper's alpha ``delta``, the paper's delta
``alpha`` and eta ``gamma``, and stores them as D x N x 1; the gated attention calls the
per-dimension scale and offset of Q and K ``gamma`` and ``beta`` (our ``kappa`` and ``mu``):
:func:`rename_layer_parameter`.

Language and translation models. The official encoders and decoders hold their embedding, layers
and final norm directly (``decoder.layers.N``); ours are built from an embedding, a ``MegaStack``
and an output layer (``decoder.stack.layers.N``): ``OFFICIAL_LAYOUT`` maps those paths
(:func:`convert_official_state_dict`). A checkpoint that still has the official names is refused
when a model loads it (:func:`refuse_official_names`): it needs the converter
(``scripts/convert_official_checkpoint.py``, :mod:`mega_fairseq.conversion`).

Classifiers (the official ``lra`` and ``sc_raw`` models) wrap their sentence encoder in a second
``encoder`` and keep the head as ``classifier.N.0`` and ``sentence_projection_layer``:
``CLASSIFIER_RULES`` maps every official name (:func:`classifier_name`); a name no rule knows is an
error.

This module needs only torch; importing it through ``mega_fairseq.models`` imports fairseq and
registers the plugin.
"""

import re
from typing import Dict, List, Optional, Tuple

from torch import Tensor


class ConversionError(ValueError):
    """An official checkpoint, or one of its tensors or options, that this plugin cannot take."""


_EMA = {"delta": "alpha", "alpha": "delta", "beta": "beta", "gamma": "eta", "omega": "omega"}
_ATTENTION = {"gamma": "kappa", "beta": "mu"}
# buffers the official modules register that carry no weights
DROPPED_BUFFERS = re.compile(r"(^|\.)(version|_float_tensor)$")
# a parameter only the official EMA has (ours is "eta")
OFFICIAL_EMA_PARAMETER = ".move.gamma"

# official path inside an encoder or decoder -> ours
OFFICIAL_LAYOUT = {
    "embed_tokens.": "embedding.embed_tokens.",
    "project_in_dim.": "embedding.project_in_dim.",
    "embed_norm.": "embedding.norm.",
    "layers.": "stack.layers.",
    "final_norm.": "stack.final_norm.",
}
# what an official LM or MT encoder/decoder holds besides OFFICIAL_LAYOUT's modules
_SEQ2SEQ_OTHERS = ("output_projection.", "adaptive_softmax.", "version")


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


def rename_layer_parameter(name: str, value: Tensor) -> Tuple[str, Tensor]:
    """One parameter of an official Mega layer (EMA, gated attention) with our name and shape."""
    prefix, _, leaf = name.rpartition(".")
    if prefix.endswith(".move") and leaf in _EMA:
        return f"{prefix}.{_EMA[leaf]}", value.squeeze(-1) if value.dim() == 3 else value
    if prefix.endswith("mega_layer") and leaf in _ATTENTION:
        return f"{prefix}.{_ATTENTION[leaf]}", value
    return name, value


def convert_official_state_dict(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """An official Mega LM or MT state dict (or one of Mega layers) with our parameter names."""
    converted = dict(rename_layer_parameter(name, value) for name, value in state.items()
                     if not DROPPED_BUFFERS.search(name))
    for module in ("encoder", "decoder"):
        rename_prefixes(converted, module, OFFICIAL_LAYOUT)
    return converted


def check_seq2seq_names(state: Dict[str, Tensor]):
    """Every tensor of an official LM or MT checkpoint belongs to a module the converter knows."""
    known = tuple(OFFICIAL_LAYOUT) + _SEQ2SEQ_OTHERS
    for name in state:
        module, _, local = name.partition(".")
        if module not in ("encoder", "decoder") or not local.startswith(known):
            raise ConversionError(f"unknown tensor {name!r} in the official checkpoint: not part of a Mega encoder or "
                                  f"decoder ({', '.join(k.rstrip('.') for k in known)})")


def refuse_official_names(state: Dict[str, Tensor], module: str):
    """Raises a ConversionError naming the converter if the Mega encoder or decoder at ``module``
    of ``state`` has the official parameter names (what ``upgrade_state_dict_named`` checks)."""
    official = [name for name in state if name.startswith(f"{module}.") and name.endswith(OFFICIAL_EMA_PARAMETER)]
    if official:
        raise ConversionError(f"{official[0]}: a parameter name of the official Mega code; convert the checkpoint "
                              f"first (scripts/convert_official_checkpoint.py OFFICIAL.pt CONVERTED.pt)")


# ---------------------------------------------------------------------------------------------
# Classifiers

HEAD = "classification_heads.sentence_classification_head"
OUTPUT = HEAD + ".out_proj.weight"
FIRST_TOKEN = "encoder.first_token"
TOKEN_TABLE = "encoder.embedding.embed_tokens.weight"
POSITIONS = "encoder.stack.positions.weight"

# (official name pattern, our name, inputs it applies to: "tokens", "real" or None for both).
# The Mega encoder wraps its token table (``embed_tokens.embed``); the Transformer's is an
# nn.Embedding (``embed_tokens.weight``); for pixels and samples ``embed_tokens`` is the
# real-number embedding x * weight + bias of both.
CLASSIFIER_RULES: List[Tuple[str, str, Optional[str]]] = [
    (r"encoder\.encoder\.embed_tokens\.embed\.weight", TOKEN_TABLE, "tokens"),
    (r"encoder\.encoder\.embed_tokens\.weight", TOKEN_TABLE, "tokens"),
    (r"encoder\.encoder\.embed_tokens\.(weight|bias)", r"encoder.embedding.\1", "real"),
    (r"encoder\.encoder\.embed_norm\.(.+)", r"encoder.embedding.norm.\1", None),
    (r"encoder\.encoder\.layers\.(\d+)\.(.+)", r"encoder.stack.layers.\1.\2", None),
    (r"encoder\.encoder\.final_norm\.(.+)", r"encoder.stack.final_norm.\1", None),
    (r"encoder\.encoder\.emb_layer_norm\.(weight|bias)", r"encoder.stack.embedding_norm.\1", None),
    (r"encoder\.encoder\.embed_positions\.weight", POSITIONS, None),
    (r"classifier\.(\d+)\.0\.(weight|bias)", HEAD + r".hidden.\1.\2", None),
    (r"sentence_projection_layer\.weight", OUTPUT, None),
]


def classifier_name(name: str, inputs: str) -> str:
    """Our name of the official classifier tensor ``name`` (``inputs``: "tokens" or "real")."""
    for pattern, replacement, applies_to in CLASSIFIER_RULES:
        if applies_to in (None, inputs) and re.fullmatch(pattern, name):
            return re.sub(pattern, replacement, name)
    raise ConversionError(f"unknown tensor {name!r} in the official classifier checkpoint (its sentence encoder "
                          f"'encoder.encoder', head 'classifier.N.0' and 'sentence_projection_layer' are known)")
