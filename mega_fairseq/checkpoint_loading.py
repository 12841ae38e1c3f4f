"""Safe ``torch.load`` for fairseq checkpoints.

torch.load defaults to weights-only unpickling, which refuses the few non-tensor objects
fairseq puts in a checkpoint. Rather than turning safe loading off, allow-list exactly
those classes.
"""

import argparse
import collections

import torch


def fairseq_checkpoint_globals():
    from fairseq.logging import meters

    return [
        argparse.Namespace,
        collections.OrderedDict,
        collections.defaultdict,
        meters.AverageMeter,
        meters.SumMeter,
        meters.TimeMeter,
        meters.StopwatchMeter,
        meters.MetersDict,
    ]


def allow_fairseq_checkpoints():
    torch.serialization.add_safe_globals(fairseq_checkpoint_globals())
