from . import mega_lm  # noqa: F401
