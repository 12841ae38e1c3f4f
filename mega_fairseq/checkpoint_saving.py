"""Checkpoints written so that a kill at any moment leaves every checkpoint file whole.

fairseq 0.12 writes the first checkpoint of a save (``checkpoint_1_4000.pt``, ``checkpoint3.pt``,
or ``checkpoint_last.pt`` when it is the only one) to ``NAME.tmp`` and renames it into place,
but then *copies* it onto the others (``checkpoint_last.pt``, ``checkpoint_best.pt``, ...) with
``shutil.copyfile``, which truncates the destination and rewrites it in place. A job killed
during that copy (preempted, out of time, out of memory) leaves a truncated
``checkpoint_last.pt``, and the restart, which loads it, fails. The plugin writes every
checkpoint file the same way instead: to ``NAME.tmp`` beside it, flushed to disk (fsync), then
renamed over ``NAME`` (``os.replace``, atomic on POSIX), so a reader sees the old file or the
new one, never a part. Paths handled by an ioPath handler (not the local file system) and
``--write-checkpoints-asynchronously`` keep fairseq's behaviour.
"""

import contextlib
import functools
import os
import shutil

TMP_SUFFIX = ".tmp"  # fairseq's own, so that one name means "being written" whichever code wrote it


def _local(path: str) -> bool:
    from fairseq.file_io import PathManager

    return not PathManager.path_requires_pathmanager(path)


@contextlib.contextmanager
def replacing(path: str):
    """Yields a temporary path beside ``path``; once the block has written it, it is flushed to
    disk and renamed over ``path``. On an error the temporary file is removed and ``path`` is
    left as it was."""
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
    """Routes fairseq's checkpoint writes (the first file and the copies) through ``replacing``."""
    from fairseq import checkpoint_utils
    from fairseq.file_io import PathManager

    save = checkpoint_utils.torch_persistent_save
    if getattr(save, "writes_atomically", False):
        return

    @functools.wraps(save)
    def torch_persistent_save(obj, filename, async_write: bool = False):
        if async_write or not isinstance(filename, str) or not _local(filename):
            return save(obj, filename, async_write)
        with replacing(filename) as tmp, open(tmp, "wb") as f:
            checkpoint_utils._torch_persistent_save(obj, f)  # fairseq's torch.save, with its retries

    class CheckpointPathManager(PathManager):
        """fairseq's PathManager, with ``copy`` (used by ``save_checkpoint`` only) through ``replacing``."""

        @staticmethod
        def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
            if not _local(dst_path):
                return PathManager.copy(src_path, dst_path, overwrite)
            if not overwrite and os.path.exists(dst_path):
                return False
            with replacing(dst_path) as tmp:
                shutil.copyfile(src_path, tmp)
            return True

    torch_persistent_save.writes_atomically = True
    checkpoint_utils.torch_persistent_save = torch_persistent_save
    checkpoint_utils.PathManager = CheckpointPathManager
