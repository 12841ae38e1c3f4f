"""Safe ``torch.load`` for fairseq checkpoints.

Every load passes ``weights_only=True`` explicitly: torch's own default is weights-only only
from torch 2.6 on, and ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns that default off (an explicit
``weights_only=True`` overrides it; torch/serialization.py, ``load``). The weights-only unpickler
refuses every object but tensors and allow-listed classes. Checkpoints from fairseq <= 0.10 (the
official Mega checkpoints among them) also hold an ``argparse.Namespace`` of arguments and numpy
scalars and arrays (e.g. the best validation loss): rather than turning safe loading off,
allow-list exactly those classes.

Every path that reads a checkpoint through fairseq (``--restore-file``,
``--finetune-from-model``, fairseq-generate, -interactive, -eval-lm, -validate, ``from_pretrained``
and the scripts built on them) goes through ``checkpoint_utils.load_checkpoint_to_cpu``, which
calls ``torch.load`` without ``weights_only``. The plugin gives fairseq's checkpoint module a
``torch`` whose ``load`` is weights-only, and wraps the reader so that a refused checkpoint (one
holding, say, a pickled call to ``os.system``) is an error naming the file
(:class:`UnsafeCheckpointError`) instead of a bare unpickling traceback.
"""

import argparse
import pickle
import types

import numpy as np
import torch


def fairseq_checkpoint_globals():
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        from numpy._core.multiarray import _reconstruct, scalar
    else:
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = [type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    return [argparse.Namespace, scalar, _reconstruct, np.ndarray, np.dtype, *dtypes]


# torch 2.6: weights-only loading by default (also for loads outside fairseq's checkpoint module),
# torch.serialization.add_safe_globals; the oldest torch the tests have run on
MIN_TORCH = "2.6"


def require_torch():
    """Refuses to run on a torch older than ``MIN_TORCH`` (setup.py's floor)."""
    if torch.__version__ < MIN_TORCH:  # TorchVersion compares as a version, "2.10" > "2.6"
        raise ImportError(f"mega_fairseq needs torch >= {MIN_TORCH} (weights-only checkpoint loading); this is "
                          f"torch {torch.__version__}: upgrade torch (pip install 'torch>={MIN_TORCH}')")


def allow_fairseq_checkpoints():
    torch.serialization.add_safe_globals(fairseq_checkpoint_globals())


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint that holds objects other than weights and the classes allowed above."""


def _refusal(path, error: Exception) -> UnsafeCheckpointError:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # torch's message: a paragraph on weights_only, then the refused global ("... GLOBAL posix.system ...")
    reason = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line),
                  lines[0] if lines else type(error).__name__)
    return UnsafeCheckpointError(
        f"{path}: refusing to load this checkpoint: it holds objects other than tensors and the classes fairseq "
        f"checkpoints need, and unpickling them could run code ({reason}). Load only checkpoints you trust; "
        f"this one was not written by fairseq or this plugin as it is.")


def safe_load(path):
    """``torch.load`` in weights-only mode; a refused checkpoint is an error naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise _refusal(path, error) from None


class _TorchLoadingAs(types.ModuleType):
    """torch as one fairseq module sees it (set as that module's name ``torch``): torch itself,
    except that ``load`` always passes ``weights_only``, whatever the caller and the environment say.

    - fairseq's checkpoint module: ``weights_only=True`` (the module docstring);
    - fairseq's distributed utilities: ``weights_only=False``. They load nothing but the bytes
      another rank of the same job serialised with torch.save: the broadcast of a checkpoint that
      rank 0 has read through the weights-only reader, holding an OmegaConf config and fairseq's
      tensor placeholders, which torch's weights-only default (from 2.6) refuses, so that a
      multi-process run could not resume.
    """

    def __init__(self, weights_only: bool):
        super().__init__("torch")
        self._weights_only = weights_only

    def __getattr__(self, name):
        return getattr(torch, name)

    def load(self, f, map_location=None, **kwargs):
        return torch.load(f, map_location=map_location, **{**kwargs, "weights_only": self._weights_only})


def load_broadcasts_between_ranks():
    """Lets the ranks of a job receive what rank 0 broadcasts (see :class:`_TorchLoadingAs`); tested by
    tests/test_distributed.py::test_two_processes_resume_from_the_checkpoint_rank_0_broadcasts."""
    from fairseq.distributed import utils as distributed_utils

    distributed_utils.torch = _TorchLoadingAs(weights_only=False)


def refuse_unsafe_checkpoints():
    """Makes fairseq's checkpoint reader weights-only, with refusals naming the file (see the
    module docstring)."""
    from fairseq import checkpoint_utils

    original = checkpoint_utils.load_checkpoint_to_cpu
    if getattr(original, "refuses_unsafe_checkpoints", False):
        return
    # fairseq's checkpoint module calls torch.load (load_checkpoint_to_cpu, load_ema_from_checkpoint)
    # through its module-level name torch: replace that name, not torch.load for everyone
    checkpoint_utils.torch = _TorchLoadingAs(weights_only=True)

    def load_checkpoint_to_cpu(path, arg_overrides=None, load_on_all_ranks=False):
        try:
            return original(path, arg_overrides, load_on_all_ranks)
        except UnsafeCheckpointError:
            raise
        except Exception as error:  # a file that holds no checkpoint, or an unsafe one, is named as such
            from .checkpoint_errors import reading_error

            raise reading_error(path, error) from None

    load_checkpoint_to_cpu.refuses_unsafe_checkpoints = True
    load_checkpoint_to_cpu.__doc__ = original.__doc__
    checkpoint_utils.load_checkpoint_to_cpu = load_checkpoint_to_cpu
