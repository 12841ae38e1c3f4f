"""python -m demo.speech_words where espeak-ng is missing: it says how to install it, and writes
nothing."""

import os
import subprocess
import sys

from helpers import ROOT


def test_missing_espeak_is_explained(tmp_path):
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    env = dict(os.environ, PATH=str(empty), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "demo.speech_words", str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "apt-get install espeak-ng" in proc.stderr and "brew install espeak-ng" in proc.stderr
    assert not (tmp_path / "out").exists()
