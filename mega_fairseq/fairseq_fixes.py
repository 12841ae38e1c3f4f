"""Every change mega_fairseq makes to fairseq 0.12 (and to torch's allow-list of checkpoint
classes), one function each: what fairseq does wrong, what the plugin does instead, the test
that shows it.

=====================================  ========================================================
fix                                    fairseq 0.12 alone
=====================================  ========================================================
:func:`allow_checkpoint_classes`       fairseq <= 0.10 checkpoints fail torch's weights-only load
:func:`refuse_unsafe_checkpoints`      its checkpoint reader unpickles whatever a file holds
:func:`load_broadcasts_between_ranks`  several processes cannot resume on torch >= 2.6
:func:`write_checkpoints_atomically`   a kill while saving truncates ``checkpoint_last.pt``
:func:`replace_unk_reads_alignments`   ``--print-alignment hard --replace-unk``: a TypeError
:func:`replace_unk_without_dictionary` the bare flag ``--replace-unk`` opens a file named "@@ "
:func:`name_checkpoints_in_errors`    a mismatched checkpoint: "ensure that the architectures match"
=====================================  ========================================================

:func:`apply` applies them all, once however often it is called. The plugin calls it when fairseq
loads it (:mod:`mega_fairseq.registration`); importing ``mega_fairseq`` or its ``modules``
changes nothing. The environment variable ``MEGA_FAIRSEQ_NO_FIXES=1`` turns every fix off: fairseq
then runs as released (the models, tasks and criterions still register).
"""

import contextlib
import functools
import logging
import os
import pickle
import shutil
from typing import Dict, List, Tuple

import torch

from .checkpoint_errors import CheckpointMismatchError, reading_error
from .checkpoint_loading import TorchLoadingAs, UnsafeCheckpointError, fairseq_checkpoint_globals, refusal

logger = logging.getLogger(__name__)

SWITCH = "MEGA_FAIRSEQ_NO_FIXES"  # set to 1: apply() changes nothing
_applied = False


def disabled() -> bool:
    return os.environ.get(SWITCH, "") not in ("", "0")


def apply():
    """Applies every fix below unless ``MEGA_FAIRSEQ_NO_FIXES`` is set; idempotent."""
    global _applied
    if _applied:
        return
    _applied = True
    if disabled():
        logger.warning(f"{SWITCH} is set: fairseq runs without the plugin's fixes (mega_fairseq/fairseq_fixes.py)")
        return
    allow_checkpoint_classes()
    refuse_unsafe_checkpoints()
    load_broadcasts_between_ranks()
    write_checkpoints_atomically()
    replace_unk_reads_alignments()
    replace_unk_without_dictionary()
    name_checkpoints_in_errors()


def allow_checkpoint_classes():
    """Wrong: checkpoints of fairseq <= 0.10 (the official Mega ones among them) pickle an
    ``argparse.Namespace`` and numpy values, which torch's weights-only unpickler (torch's default
    from 2.6) refuses, so ``torch.load(path)`` of such a checkpoint fails anywhere in the process.
    Instead: those classes, and only those (:func:`~mega_fairseq.checkpoint_loading.fairseq_checkpoint_globals`),
    join torch's allow-list.
    Shown by tests/cli/test_lm_cli.py::test_legacy_checkpoint_objects_load_with_weights_only."""
    torch.serialization.add_safe_globals(fairseq_checkpoint_globals())


def refuse_unsafe_checkpoints():
    """Wrong: every path that reads a checkpoint through fairseq (``--restore-file``,
    ``--finetune-from-model``, fairseq-generate, -interactive, -eval-lm, -validate,
    ``from_pretrained``) goes through ``checkpoint_utils.load_checkpoint_to_cpu``, which calls
    ``torch.load`` without ``weights_only``: on torch < 2.6, or with
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, a crafted checkpoint runs code when read.
    Instead: fairseq's checkpoint module sees a ``torch`` whose ``load`` is weights-only (its own
    name ``torch`` is replaced, not ``torch.load`` for everyone), and a refused checkpoint is an
    :class:`~mega_fairseq.checkpoint_loading.UnsafeCheckpointError` naming the file.
    Shown by tests/cli/test_safe_loading.py::test_crafted_checkpoint_is_refused (and
    tests/cli/test_fairseq_fixes_cli.py::test_switch_gives_fairseqs_own_behaviour, without the fix)."""
    from fairseq import checkpoint_utils

    original = checkpoint_utils.load_checkpoint_to_cpu
    checkpoint_utils.torch = TorchLoadingAs(weights_only=True)

    @functools.wraps(original)
    def load_checkpoint_to_cpu(path, arg_overrides=None, load_on_all_ranks=False):
        try:
            return original(path, arg_overrides, load_on_all_ranks)
        except UnsafeCheckpointError:
            raise
        except pickle.UnpicklingError as error:
            raise refusal(path, error) from None
        except Exception as error:  # a file that holds no checkpoint is named as such
            raise reading_error(path, error) from None

    checkpoint_utils.load_checkpoint_to_cpu = load_checkpoint_to_cpu


def load_broadcasts_between_ranks():
    """Wrong: when several processes resume, rank 0 reads the checkpoint and broadcasts it; the
    other ranks unpickle those bytes with ``torch.load`` in fairseq's distributed utilities, whose
    weights-only default (torch >= 2.6) refuses the OmegaConf config and fairseq's tensor
    placeholders in them, so a multi-process run cannot resume.
    Instead: those utilities see a ``torch`` whose ``load`` is not weights-only. They load nothing
    but what another rank of the same job serialised from a checkpoint the weights-only reader
    has already accepted; checkpoint files stay weights-only.
    Shown by tests/cli/test_distributed.py::test_two_processes_resume_from_the_checkpoint_rank_0_broadcasts."""
    from fairseq.distributed import utils as distributed_utils

    distributed_utils.torch = TorchLoadingAs(weights_only=False)


TMP_SUFFIX = ".tmp"  # fairseq's own, so that one name means "being written" whichever code wrote it


@contextlib.contextmanager
def _replacing(path: str):
    """Yields a temporary path beside ``path``; once the block has written it, it is flushed to
    disk and renamed over ``path`` (``os.replace``, atomic on POSIX). On an error the temporary
    file is removed and ``path`` is left as it was."""
    tmp = path + TMP_SUFFIX
    try:
        yield tmp
        with open(tmp, "r+b") as f:
            os.fsync(f.fileno())  # the data reaches the disk before the rename does
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_checkpoints_atomically():
    """Wrong: fairseq writes the first file of a save (``checkpoint_1_4000.pt``, ``checkpoint3.pt``,
    or ``checkpoint_last.pt`` alone) to ``NAME.tmp`` and renames it into place, but then *copies*
    it onto the others (``checkpoint_last.pt``, ``checkpoint_best.pt``, ...) with
    ``shutil.copyfile``, which truncates the destination and rewrites it in place: a job killed
    during the copy (preempted, out of time or memory) leaves a truncated ``checkpoint_last.pt``,
    and the restart, which loads it, fails.
    Instead: every checkpoint file, the first and the copies, is written to ``NAME.tmp``, flushed
    and renamed over ``NAME``, so a reader sees the old file or the new one, never a part. Paths
    of an ioPath handler (not the local file system) and ``--write-checkpoints-asynchronously``
    keep fairseq's behaviour.
    Shown by tests/cli/test_resume.py::test_killed_while_saving_keeps_the_previous_checkpoint (and
    tests/cli/test_resume.py::test_without_atomic_saves_a_kill_while_saving_breaks_the_restart, without
    the fix)."""
    from fairseq import checkpoint_utils
    from fairseq.file_io import PathManager

    save = checkpoint_utils.torch_persistent_save

    def local(path) -> bool:
        return isinstance(path, str) and not PathManager.path_requires_pathmanager(path)

    @functools.wraps(save)
    def torch_persistent_save(obj, filename, async_write: bool = False):
        if async_write or not local(filename):
            return save(obj, filename, async_write)
        with _replacing(filename) as tmp, open(tmp, "wb") as f:
            checkpoint_utils._torch_persistent_save(obj, f)  # fairseq's torch.save, with its retries

    class CheckpointPathManager(PathManager):
        """fairseq's PathManager, with ``copy`` (used by ``save_checkpoint`` only) through ``_replacing``."""

        @staticmethod
        def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
            if not local(dst_path):
                return PathManager.copy(src_path, dst_path, overwrite)
            if not overwrite and os.path.exists(dst_path):
                return False
            with _replacing(dst_path) as tmp:
                shutil.copyfile(src_path, tmp)
            return True

    checkpoint_utils.torch_persistent_save = torch_persistent_save
    checkpoint_utils.PathManager = CheckpointPathManager


def target_to_source(pairs: List[Tuple[int, int]]) -> Dict[int, int]:
    """(source word, target word) pairs -> {target word: source word} (fairseq's hard alignment
    gives one pair per target word)."""
    return {target: source for source, target in pairs}


def replace_unk_reads_alignments():
    """Wrong: ``utils.replace_unk`` reads ``alignment[i]`` as the source word of target word i,
    but the alignments of ``--print-alignment hard`` are (source word, target word) pairs
    (``utils.extract_hard_alignment``): ``--replace-unk`` fails with a TypeError, for every model.
    Instead: a list of pairs is read as {target word: source word}; anything else is passed on.
    Shown by tests/cli/test_mt_alignment.py::test_replace_unk_copies_the_aligned_source_word."""
    from fairseq import utils

    replace_unk = utils.replace_unk

    @functools.wraps(replace_unk)
    def replace_unk_by_pairs(hypo_str, src_str, alignment, align_dict, unk):
        if isinstance(alignment, list) and all(isinstance(pair, tuple) and len(pair) == 2 for pair in alignment):
            alignment = target_to_source(alignment)
        return replace_unk(hypo_str, src_str, alignment, align_dict, unk)

    utils.replace_unk = replace_unk_by_pairs


BARE_FLAG = "@@ "  # the value of --replace-unk given without a dictionary (the flag's argparse_const)


def replace_unk_without_dictionary():
    """Wrong: the bare flag ``--replace-unk`` (no alignment dictionary) gives the string "@@ ",
    which ``utils.load_align_dict`` opens as a file.
    Instead: that value means no dictionary (each ``<unk>`` becomes its aligned source word, as
    fairseq documents); a dictionary's path is read as before.
    Shown by tests/cli/test_mt_alignment.py::test_replace_unk_copies_the_aligned_source_word."""
    from fairseq import utils

    load_align_dict = utils.load_align_dict

    @functools.wraps(load_align_dict)
    def load_align_dict_of_flag(value):
        return load_align_dict("" if value == BARE_FLAG else value)

    utils.load_align_dict = load_align_dict_of_flag


def name_checkpoints_in_errors():
    """Wrong: fairseq's trainer replaces any error raised while loading a checkpoint
    (--restore-file, --finetune-from-model) by "please ensure that the architectures match", and
    ``load_model_ensemble_and_task`` (evaluation, ``from_pretrained``) names no file: a checkpoint of
    another kind of model or another dictionary is a puzzle after a page of configuration.
    Instead: the plugin's checks (:mod:`mega_fairseq.checkpoint_errors`) raise
    :class:`~mega_fairseq.checkpoint_errors.CheckpointMismatchError`, and both loaders re-raise it
    naming the checkpoint file, as the last thing printed.
    Shown by tests/cli/test_checkpoint_errors.py::test_a_language_model_of_another_dictionary_is_named and
    tests/cli/test_checkpoint_errors.py::test_a_model_built_for_a_task_of_another_kind_is_named."""
    from fairseq import checkpoint_utils
    from fairseq.trainer import Trainer

    load_ensemble = checkpoint_utils.load_model_ensemble_and_task

    @functools.wraps(load_ensemble)
    def load_model_ensemble_and_task(filenames, *args, **kwargs):
        try:
            return load_ensemble(filenames, *args, **kwargs)
        except CheckpointMismatchError as error:
            raise error.naming(" or ".join(map(str, filenames))) from None

    load_checkpoint = Trainer.load_checkpoint

    @functools.wraps(load_checkpoint)
    def trainer_load_checkpoint(self, filename, *args, **kwargs):
        try:
            return load_checkpoint(self, filename, *args, **kwargs)
        except Exception as error:
            cause = error if isinstance(error, CheckpointMismatchError) else error.__context__
            if isinstance(cause, CheckpointMismatchError):
                raise cause.naming(filename) from None
            raise

    checkpoint_utils.load_model_ensemble_and_task = load_model_ensemble_and_task
    Trainer.load_checkpoint = trainer_load_checkpoint
