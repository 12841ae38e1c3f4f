from . import mega_language_modeling  # noqa: F401
from . import mega_sequence_classification  # noqa: F401
