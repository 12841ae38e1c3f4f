"""What the plugin changes in fairseq, seen from processes of their own (CPU): the layers import and
run in a process where fairseq cannot be imported; MEGA_FAIRSEQ_NO_FIXES=1 leaves fairseq as released
while the plugin still registers."""

import os
import subprocess
import sys

import pytest

from helpers import ROOT
from helpers.tiny import crafted_checkpoint

# a meta-path finder first in line that refuses fairseq and everything under it
NO_FAIRSEQ = """
import sys

class NoFairseq:
    def find_spec(self, name, path=None, target=None):
        if name == "fairseq" or name.startswith("fairseq."):
            raise ImportError(f"fairseq is not importable here ({name})")

sys.meta_path.insert(0, NoFairseq())
"""

LAYERS_WITHOUT_FAIRSEQ = NO_FAIRSEQ + """
import torch
from mega_fairseq.modules import MegaLayerConfig, MegaStack

cfg = MegaLayerConfig(layers=2, embed_dim=8, hidden_dim=16, z_dim=4, n_dim=2, chunk_size=4, max_positions=16,
                      dropout=0.0)
stack = MegaStack(cfg, causal=True)
x = torch.randn(2, 10, 8, requires_grad=True)
out = stack(x).out
out.sum().backward()
assert out.shape == (2, 10, 8) and torch.isfinite(x.grad).all()
assert not any(name == "fairseq" or name.startswith("fairseq.") for name in sys.modules), "fairseq was imported"
try:
    import mega_fairseq.models  # the fairseq glue: refused here
except ImportError as error:
    print("glue refused:", error)
print("forward without fairseq ok")
"""


def python(code, **env):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **env})


def test_layers_import_and_run_where_fairseq_cannot_be_imported():
    proc = python(LAYERS_WITHOUT_FAIRSEQ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "glue refused: fairseq is not importable here" in proc.stdout  # the finder did refuse fairseq
    assert proc.stdout.strip().endswith("forward without fairseq ok")


@pytest.fixture
def crafted(tmp_path):
    return crafted_checkpoint(tmp_path)


# fairseq's checkpoint reader, with torch's weights-only default turned off (as on torch < 2.6)
READ_CRAFTED = """
import sys
import mega_fairseq.models
from fairseq import checkpoint_utils, utils
from fairseq.criterions import CRITERION_REGISTRY
from fairseq.models import ARCH_MODEL_REGISTRY
from fairseq.tasks import TASK_REGISTRY

assert "mega_lm_tiny" in ARCH_MODEL_REGISTRY and "mega_sequence_classification" in TASK_REGISTRY
assert "lra_cross_entropy" in CRITERION_REGISTRY
patched = [f.__name__ for f in (checkpoint_utils.load_checkpoint_to_cpu, checkpoint_utils.torch_persistent_save,
                                utils.replace_unk, utils.load_align_dict) if hasattr(f, "__wrapped__")]
print("patched:", " ".join(patched) or "none")
try:
    checkpoint_utils.load_checkpoint_to_cpu(sys.argv[1])
except Exception as error:
    print(type(error).__name__)
"""


def test_switch_gives_fairseqs_own_behaviour(crafted):
    """With MEGA_FAIRSEQ_NO_FIXES=1 fairseq's checkpoint reader is its own: it unpickles the crafted
    checkpoint, running its code; the plugin's models, tasks and criterions still register."""
    path, marker = crafted
    proc = subprocess.run([sys.executable, "-c", READ_CRAFTED, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore", "MEGA_FAIRSEQ_NO_FIXES": "1",
                                            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "patched: none" in proc.stdout, proc.stdout
    assert "MEGA_FAIRSEQ_NO_FIXES is set" in proc.stderr
    assert marker.exists(), "fairseq's own reader should have run the checkpoint's code"
