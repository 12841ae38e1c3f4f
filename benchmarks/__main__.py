"""``python -m benchmarks``: run the benchmark (see ``benchmarks/__init__.py``);
``python -m benchmarks paper``: the paper's efficiency table (``benchmarks/paper.py``)."""

import importlib
import sys

# python -m benchmarks NAME ...: main(argv) of the module benchmarks/NAME.py, with the arguments after NAME
SUBCOMMANDS = ("paper",)

if sys.argv[1:2] and sys.argv[1] in SUBCOMMANDS:
    importlib.import_module(f".{sys.argv[1]}", __package__).main(sys.argv[2:])
else:
    from .harness import main

    main()
