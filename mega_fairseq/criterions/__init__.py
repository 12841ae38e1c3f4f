"""The criterions of mega_fairseq (importing this package registers the plugin: mega_fairseq.registration).

Language models train with fairseq's own ``cross_entropy`` and ``adaptive_loss``, translation with
``label_smoothed_cross_entropy``, classifiers with ``sentence_prediction``: the official Mega
command lines name these too, except ``lra_cross_entropy``, which is registered here.
"""
from .. import registration  # noqa: F401
from . import lra_cross_entropy  # noqa: F401
