"""The fairseq models of mega_fairseq (importing this package registers the plugin: mega_fairseq.registration)."""
from .. import registration  # noqa: F401
from . import mega_lm  # noqa: F401
from . import mega_translation  # noqa: F401
from . import mega_classifier  # noqa: F401
