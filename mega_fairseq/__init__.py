"""Mega (Moving Average Equipped Gated Attention) for fairseq: ``--user-dir mega_fairseq``.

Importing this package, or its layers (``from mega_fairseq.modules import MegaStack``), imports
neither fairseq nor changes it. The fairseq part registers itself when fairseq loads the plugin:
see :mod:`mega_fairseq.registration`.
"""

from .checkpoint_loading import require_torch

require_torch()  # a clear error before any module meets an older torch
