"""fairseq runs in processes forked from one that has imported fairseq (a multiprocessing forkserver):
real processes, which a test can kill with a real SIGKILL or run side by side as the ranks of one
training, without paying the import each time; and reading what the runs leave: their logged
updates and their checkpoints."""

import argparse
import builtins
import importlib
import multiprocessing
import os
import re
import signal
import socket
import sys
from pathlib import Path

import torch

from helpers.fairseq_jobs import check_device

TIMING = {"wps", "ups", "wall", "train_wall", "gb_free"}  # logged metrics that measure time, not training


# ---------------------------------------------------------------- fairseq in forked processes


def fairseq_processes():
    """A multiprocessing context whose processes fork from a server that has imported fairseq."""
    context = multiprocessing.get_context("forkserver")
    # torch._dynamo: imported by the first torch optimizer; seconds, paid once here
    context.set_forkserver_preload(["fairseq_cli.train", "fairseq_cli.hydra_train", "fairseq_cli.preprocess",
                                    "mega_fairseq.models", "torch._dynamo", __name__])
    return context


def fairseq_cli(command, argv, log, env=None, die_writing=None, stock_saving=False):
    """fairseq-COMMAND ARGV (train, hydra_train or preprocess) in this process with ENV added to its
    environment, its output appended to LOG, on one thread (runs go side by side on a small
    machine). die_writing=(prefix, n): die while writing the n-th file whose name starts with
    prefix (see die_while_writing). stock_saving: fairseq's own checkpoint writing instead of the
    plugin's."""
    os.environ.update(env or {})
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    torch.set_num_threads(1)
    if stock_saving:
        from fairseq import checkpoint_utils, file_io

        checkpoint_utils.torch_persistent_save = checkpoint_utils.torch_persistent_save.__wrapped__
        checkpoint_utils.PathManager = file_io.PathManager
    if die_writing:
        die_while_writing(*die_writing)
    sys.argv = [f"fairseq-{command}", *map(str, argv)]
    importlib.import_module(f"fairseq_cli.{command}").cli_main()


class _DyingFile:
    """A file open for writing that, when closed, keeps the first half of what was written to it and
    kills the process: what a SIGKILL halfway through writing it leaves."""

    def __init__(self, file):
        self._file = file

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        self._file.flush()
        os.ftruncate(self._file.fileno(), os.fstat(self._file.fileno()).st_size // 2)
        os.kill(os.getpid(), signal.SIGKILL)


def die_while_writing(prefix: str, nth: int):
    """The nth file opened for writing from now on whose name starts with prefix is left half
    written by a SIGKILL. Both ways fairseq writes checkpoints go through open(): torch.save into
    an opened file, and shutil.copyfile (which writes through the opened file's descriptor)."""
    real_open = builtins.open
    seen = 0

    def open_(file, mode="r", *args, **kwargs):
        nonlocal seen
        opened = real_open(file, mode, *args, **kwargs)
        if "w" in mode and isinstance(file, (str, os.PathLike)) and Path(file).name.startswith(prefix):
            seen += 1
            if seen == nth:
                return _DyingFile(opened)
        return opened

    builtins.open = open_


def start(context, argv, log, command="train", **options):
    if command in ("train", "hydra_train"):
        check_device(f"fairseq-{command}", argv, "cpu")
    process = context.Process(target=fairseq_cli, args=(command, argv, log), kwargs=options)
    process.start()
    return process


def finish(process, log, expected=0):
    process.join(timeout=300)
    assert process.exitcode == expected, f"exit code {process.exitcode}\n{Path(log).read_text()[-4000:]}"


def free_port():
    """A TCP port free now on this machine, for the ranks of a distributed run to meet on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- reading the results


def logged_updates(log):
    """{update: metrics of its train_inner line} (every update: --log-interval 1), timing left out."""
    found = {}
    for line in Path(log).read_text().splitlines():
        match = re.search(r"\btrain_inner\b.*? epoch \d+:\s+\d+ / \d+ (.*)$", line)  # fairseq's or Hydra's format
        if match:
            metrics = dict(item.split("=", 1) for item in match.group(1).split(", "))
            found[int(metrics["num_updates"])] = {k: v for k, v in metrics.items() if k not in TIMING}
    return found


def load(path):
    with torch.serialization.safe_globals([argparse.Namespace]):  # the config of a legacy optimizer (sgd)
        return torch.load(path, map_location="cpu", weights_only=True)


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


def assert_same_tensors(first, second, what):
    first, second = tensors(first), tensors(second)
    assert first.keys() == second.keys() and first, what
    different = [name for name in first if not torch.equal(first[name], second[name])]
    assert not different, f"{what}: {different[:5]}"
