import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fairseq_driver import COMMANDS, check_device

ROOT = Path(__file__).resolve().parents[1]
USER_DIR = str(ROOT / "mega_fairseq")
# test this checkout, whichever copy is installed: in this process and in the commands it runs
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
FAIRSEQ_CLIS = {f"fairseq-{command.replace('_', '-')}" for command in COMMANDS} | {"fairseq-hydra-train"}
FAIRSEQ_SCRIPTS = {"train.sh", "eval_lm.sh", "eval_cls.sh", "eval_bleu.sh"}  # of scripts/; CPU=1: on the CPU


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU, skipped without one (pytest -m cuda runs them all)")


def pytest_collection_modifyitems(config, items):
    """The cuda marker is the one place that says a test needs a GPU: it is skipped without one."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


def fairseq_launched(cmd):
    """The fairseq command, or the script of scripts/ that runs one, that cmd launches; else None."""
    for word in map(Path, map(str, cmd)):
        if word.name in FAIRSEQ_CLIS or (word.name in FAIRSEQ_SCRIPTS and word.parent.name == "scripts"):
            return word.name
    return None


def run(cmd, cwd=None, check=True, timeout=600, env=None, device="cpu"):
    """Run a CLI; return (returncode, combined output). Fails the test on error when check. A
    command that runs fairseq must choose ``device`` by its arguments or ``env`` (check_device)."""
    launched = fairseq_launched(cmd)
    if launched:
        check_device(launched, cmd, device, env)
    full_env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="2", **(env or {}))
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=full_env)
    out = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{out[-6000:]}")
    return proc.returncode, out


def driver_outputs(jobs, folder):
    """The output of each job, run in one process by tests/fairseq_driver.py."""
    (folder / "jobs.json").write_text(json.dumps(jobs, default=str))
    proc = subprocess.run([sys.executable, ROOT / "tests" / "fairseq_driver.py", folder / "jobs.json"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                          env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="2"))
    assert proc.returncode == 0, proc.stdout[-6000:]
    outputs, lines = [], []
    for line in proc.stdout.splitlines():
        lines.append(line)
        if re.match(r"JOB (OK|ERROR) \d+", line):  # the job's last line
            outputs.append("\n".join(lines))
            lines = []
    return outputs


def tensors(value, prefix=""):
    """Every tensor of a nested checkpoint entry, by path."""
    if torch.is_tensor(value):
        return {prefix: value}
    found = {}
    if isinstance(value, dict):
        for key, item in value.items():
            found.update(tensors(item, f"{prefix}/{key}"))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found.update(tensors(item, f"{prefix}/{index}"))
    return found


@pytest.fixture(scope="session")
def lm_data(tmp_path_factory):
    """A small corpus from Python's own docstrings, binarised by fairseq-preprocess."""
    from demo import lm_corpus

    root = tmp_path_factory.mktemp("lm_data")
    lm_corpus.main(["--out", str(root), "--max-train-words", "20000"])
    run(["fairseq-preprocess", "--only-source", "--trainpref", root / "train.txt", "--validpref",
         root / "valid.txt", "--testpref", root / "test.txt", "--destdir", root / "bin", "--thresholdsrc", "2",
         "--workers", "1"])
    return root / "bin"


MT_WORDS = [f"w{i}" for i in range(40)]


def write_pairs(folder, split, count, seed, source="src", target="tgt"):
    """Source: random words; target: each word mapped to another, in reverse order (a learnable,
    reordering 'translation')."""
    rng = random.Random(seed)
    with open(folder / f"{split}.{source}", "w") as src, open(folder / f"{split}.{target}", "w") as tgt:
        for _ in range(count):
            words = rng.choices(MT_WORDS, k=rng.randint(3, 14))
            src.write(" ".join(words) + "\n")
            tgt.write(" ".join(f"t{w[1:]}" for w in reversed(words)) + "\n")


@pytest.fixture(scope="session")
def mt_data(tmp_path_factory):
    """A small parallel corpus (src -> tgt), binarised with a joined dictionary."""
    root = tmp_path_factory.mktemp("mt_data")
    for split, count, seed in (("train", 400, 0), ("valid", 30, 1), ("test", 30, 2)):
        write_pairs(root, split, count, seed)
    run(["fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref", root / "train",
         "--validpref", root / "valid", "--testpref", root / "test", "--destdir", root / "bin",
         "--joined-dictionary", "--workers", "1"])
    return root / "bin"
