"""The fairseq tasks of mega_fairseq (importing this package registers the plugin: mega_fairseq.registration)."""
from .. import registration  # noqa: F401
from . import mega_language_modeling  # noqa: F401
from . import mega_sequence_classification  # noqa: F401
