"""``python -m benchmarks``: run the benchmark (see ``benchmarks/__init__.py``)."""

from .harness import main

main()
