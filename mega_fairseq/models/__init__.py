from . import mega_lm  # noqa: F401
from . import mega_translation  # noqa: F401
from . import mega_classifier  # noqa: F401
