from . import mega_language_modeling  # noqa: F401
