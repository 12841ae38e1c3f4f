"""``python -m benchmarks``: run the benchmark (see ``benchmarks/__init__.py``);
``python -m benchmarks paper``: the paper's efficiency table (``benchmarks/paper.py``)."""

import importlib
import sys

# python -m benchmarks NAME ...: the module of benchmarks/ whose main(argv) runs NAME
SUBCOMMANDS = {"paper": "paper"}

if sys.argv[1:2] and sys.argv[1] in SUBCOMMANDS:
    importlib.import_module(f".{SUBCOMMANDS[sys.argv[1]]}", __package__).main(sys.argv[2:])
else:
    from .harness import main

    main()
