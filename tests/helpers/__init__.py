"""What the tests share, imported as ``helpers`` (tests/conftest.py puts tests/ on sys.path, for the
tests of tests/unit and tests/cli alike); no test imports another test module.

- classifier: the logits fairseq-validate computes for a classifier, to compare its hub with.
- fairseq_jobs: runs fairseq: a command or script (``run``), or several fairseq jobs in one process
  (the job driver, which the module also is), and reads what each job printed; every run states
  its device.
- forked: fairseq runs in processes forked from one that has imported fairseq (killed, restarted,
  run side by side as ranks), and what such runs leave: their logged updates and checkpoints.
- tiny: tiny data in every format the project reads, and the tiny settings several tests share.
"""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
USER_DIR = str(ROOT / "mega_fairseq")
SCRIPTS = ROOT / "scripts"


def script(name: str):
    """A module of scripts/, imported from its file (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
