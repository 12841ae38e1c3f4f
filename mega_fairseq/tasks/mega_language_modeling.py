"""``mega_language_modeling``: fairseq's language_modeling plus the Mega LM protocol.

Training blocks of variable length (``--variant-block-multiple-min/max``: each block is
tokens_per_sample times a random multiple, redrawn every epoch), and evaluation of long
streams segment by segment with the model state carried across segments
(``--eval-streams``), so each token is scored with the whole history before it.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np
import torch
from fairseq import utils
from fairseq.data import FairseqDataset, LMContextWindowDataset, data_utils, iterators
from fairseq.tasks import register_task
from fairseq.tasks.language_modeling import LanguageModelingConfig, LanguageModelingTask
from omegaconf import II

from ..checkpoint_errors import check_model_fits_task
from .splits import TrainingSplit

logger = logging.getLogger(__name__)


@dataclass
class MegaLanguageModelingConfig(LanguageModelingConfig):
    variant_block_multiple_min: int = field(
        default=1, metadata={"help": "training blocks are at least this multiple of --tokens-per-sample"})
    variant_block_multiple_max: int = field(
        default=1, metadata={"help": "training blocks are at most this multiple of --tokens-per-sample "
                                     "(the multiple is drawn per block and per epoch)"})
    eval_streams: int = field(
        default=0, metadata={"help": "if > 0, valid/test splits are cut into this many contiguous streams, "
                                     "scored segment by segment with the model state carried over "
                                     "(needs a Mega model with --decoder-chunk-size > 0)"})
    eval_segment_length: int = field(
        default=0, metadata={"help": "tokens per segment with --eval-streams (default: --tokens-per-sample "
                                     "times --variant-block-multiple-max)"})
    # the split trained on (variable blocks; the others are evaluated, in streams with
    # --eval-streams) is named in the dataset config: interpolated here, as in fairseq's translation task
    train_subset: str = II("dataset.train_subset")


def block_sizes(blocks) -> np.ndarray:
    """Block lengths as int64: a TokenBlockDataset stores them as uint16 below a block size of
    65535, which wraps for the over-long blocks of a line longer than that; its slice indices don't."""
    slices = getattr(blocks, "slice_indices", None)
    if slices is not None:
        slices = np.asarray(slices, dtype=np.int64)
        return slices[:, 1] - slices[:, 0]
    return np.asarray(blocks.sizes, dtype=np.int64)


def check_not_empty(prefix: str, split: str):
    """fairseq memory-maps PREFIX.bin, which fails on an empty file with numpy's "cannot mmap an
    empty file", naming no file: what fairseq-preprocess writes for an empty text file."""
    data = f"{prefix}.bin"
    if os.path.isfile(data) and os.path.getsize(data) == 0:
        raise ValueError(f"{data} is empty (0 bytes): the {split} split holds no tokens; expected fairseq-preprocess "
                         f"output of a text file with at least one line (was the {split} text file empty?)")


class _BlocksOfSizes(FairseqDataset):
    """A dataset of blocks whose token counts are ``self.sizes``."""

    def __len__(self):
        return len(self.sizes)

    def num_tokens(self, index):
        return self.sizes[index]

    def size(self, index):
        return self.sizes[index]


class SplitBlockDataset(_BlocksOfSizes):
    """Cuts the blocks of a TokenBlockDataset (include_targets=True) that are longer than
    ``max_length`` into consecutive pieces of at most ``max_length`` tokens.

    ``--sample-break-mode complete`` (or complete_doc, eos) keeps a line longer than
    --tokens-per-sample whole, as one over-long block; fairseq's batching would then skip it (or
    a group of such blocks) or fail. Pieces slice the block's (source, target, past_target)
    together, so each piece keeps the true preceding token as its first source token: the token
    stream and every prediction are unchanged, nothing is dropped."""

    def __init__(self, blocks, max_length: int):
        super().__init__()
        self.blocks = blocks
        sizes = block_sizes(blocks)
        pieces = np.maximum(1, -(-sizes // max_length))
        self.block = np.repeat(np.arange(len(sizes)), pieces)
        first_piece = np.cumsum(pieces) - pieces
        self.offset = (np.arange(len(self.block)) - first_piece[self.block]) * max_length
        self.sizes = np.minimum(max_length, sizes[self.block] - self.offset)
        self._cached = (-1, None)  # the pieces of a block are read one after another

    def __getitem__(self, index):
        block = int(self.block[index])
        if self._cached[0] != block:
            self._cached = (block, self.blocks[block])
        start = int(self.offset[index])
        end = start + int(self.sizes[index])
        return tuple(tensor[start:end] for tensor in self._cached[1])



class VariableBlockDataset(_BlocksOfSizes):
    """Groups consecutive blocks of a TokenBlockDataset (include_targets=True) into longer
    blocks of a random number of them; consecutive blocks are contiguous in the token
    stream, so a group is exactly the longer block."""

    def __init__(self, blocks, multiple_min: int, multiple_max: int, seed: int):
        super().__init__()
        self.blocks = blocks
        with data_utils.numpy_seed(seed):
            multiples = np.random.randint(multiple_min, multiple_max + 1, size=len(blocks))
        ends = np.minimum(np.cumsum(multiples), len(blocks))
        ends = ends[: np.searchsorted(ends, len(blocks)) + 1]
        self.starts = np.concatenate([[0], ends[:-1]])
        self.ends = ends
        block_sizes = np.asarray(blocks.sizes, dtype=np.int64)
        cumulative = np.concatenate([[0], np.cumsum(block_sizes)])
        self.sizes = cumulative[self.ends] - cumulative[self.starts]

    def __getitem__(self, index):
        parts = [self.blocks[i] for i in range(self.starts[index], self.ends[index])]
        return tuple(torch.cat(tensors) for tensors in zip(*parts))



class StreamSegmentDataset(FairseqDataset):
    """A token stream cut into ``num_streams`` contiguous streams and then into segments.

    Item ``i * num_streams + s`` is segment i of stream s; a batch holds one segment of
    every stream, in stream order, and batches come in segment order. The collater adds
    ``first_segment`` to ``net_input`` so the model knows when to reset its state.
    """

    def __init__(self, tokens: torch.Tensor, num_streams: int, segment_length: int, pad: int, eos: int):
        super().__init__()
        self.pad, self.eos = pad, eos
        self.num_streams = num_streams
        self.segment_length = segment_length
        # every stream predicts its first token from the token before it (eos at the very start)
        sources = torch.cat([tokens.new_tensor([eos]), tokens[:-1]])
        bounds = np.linspace(0, len(tokens), num_streams + 1).astype(np.int64)
        self.streams = [(sources[a:b], tokens[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        longest = max(b - a for a, b in zip(bounds[:-1], bounds[1:]))
        self.num_segments = max(1, -(-longest // segment_length))
        self.sizes = np.array([self._segment(i)[1].numel() for i in range(len(self))], dtype=np.int64)

    def _segment(self, index):
        segment, stream = divmod(index, self.num_streams)
        source, target = self.streams[stream]
        start = segment * self.segment_length
        return source[start:start + self.segment_length], target[start:start + self.segment_length]

    def __getitem__(self, index):
        source, target = self._segment(index)
        return {"id": index, "segment": index // self.num_streams, "source": source, "target": target}

    def __len__(self):
        return self.num_segments * self.num_streams

    def num_tokens(self, index):
        return max(1, int(self.sizes[index]))

    def size(self, index):
        return max(1, int(self.sizes[index]))

    def ordered_indices(self):
        return np.arange(len(self))

    def batches(self, num_shards: int = 1, shard_id: int = 0) -> List[List[int]]:
        """One batch per segment with this shard's streams."""
        streams = list(range(shard_id, self.num_streams, num_shards))
        return [[seg * self.num_streams + s for s in streams] for seg in range(self.num_segments)]

    def collater(self, samples):
        if not samples:
            return {}
        segments = {s["segment"] for s in samples}
        if len(segments) != 1:
            raise ValueError("a stream batch must hold a single segment of every stream")
        length = max(1, max(s["source"].numel() for s in samples))

        def pad(key):
            out = samples[0][key].new_full((len(samples), length), self.pad)
            for row, s in enumerate(samples):
                out[row, :s[key].numel()] = s[key]
            return out

        target = pad("target")
        return {
            "id": torch.LongTensor([s["id"] for s in samples]),
            "nsentences": len(samples),
            "ntokens": int(target.ne(self.pad).sum()),
            "net_input": {
                "src_tokens": pad("source"),
                "src_lengths": torch.LongTensor([s["source"].numel() for s in samples]),
                "first_segment": torch.full((len(samples),), segments.pop() == 0),
            },
            "target": target,
        }


class StreamBatchIterator(iterators.EpochBatchIterator):
    """The iterator of a StreamSegmentDataset. Its ``first_batch`` (which fairseq's trainer keeps
    as the dummy batch that padded or empty steps run, training steps included, after every
    validation) is a training batch given by the task, never a stream batch."""

    def __init__(self, *args, dummy_batch: Callable[[], dict], **kwargs):
        super().__init__(*args, **kwargs)
        self._dummy_batch = dummy_batch

    @property
    def first_batch(self):
        return self._dummy_batch()


@register_task("mega_language_modeling", dataclass=MegaLanguageModelingConfig)
class MegaLanguageModelingTask(TrainingSplit, LanguageModelingTask):
    """fairseq's language_modeling with variable-length training blocks and stream evaluation."""

    def __init__(self, args, dictionary, output_dictionary=None, targets=None):
        super().__init__(args, dictionary, output_dictionary, targets)
        if not 1 <= args.variant_block_multiple_min <= args.variant_block_multiple_max:
            raise ValueError(f"need 1 <= --variant-block-multiple-min ({args.variant_block_multiple_min}) <= "
                             f"--variant-block-multiple-max ({args.variant_block_multiple_max})")
        if args.eval_streams < 0 or args.eval_segment_length < 0:
            raise ValueError("--eval-streams and --eval-segment-length must not be negative")
        self._train_iterator = None  # the latest batch iterator over the training split

    @property
    def _variable_blocks(self) -> bool:
        return self.args.variant_block_multiple_max > 1

    def _is_train(self, split: str) -> bool:
        return split == self.train_subset

    def has_sharded_data(self, split):
        # reloading the training split every epoch redraws the block lengths
        return (self._is_train(split) and self._variable_blocks) or super().has_sharded_data(split)

    def build_model(self, cfg, from_checkpoint=False):
        check_model_fits_task(cfg, self)
        model = super().build_model(cfg, from_checkpoint)
        if self.args.eval_streams > 0 and getattr(model.decoder, "chunk_size", -1) <= 0:
            raise ValueError("--eval-streams carries the keys of the current chunk across segments and "
                             "needs a Mega model with --decoder-chunk-size > 0")
        longest = self.args.tokens_per_sample * self.args.variant_block_multiple_max
        if self._variable_blocks and model.max_positions() is not None and model.max_positions() < longest:
            raise ValueError(f"training blocks reach {longest} tokens but the model takes at most "
                             f"{model.max_positions()}: raise --max-target-positions")
        return model

    def load_dataset(self, split: str, epoch=1, combine=False, **kwargs):
        for path in utils.split_paths(self.args.data):
            check_not_empty(os.path.join(path, split), split)
        is_train = self._is_train(split)
        if not is_train and self.args.eval_streams > 0:
            self.datasets[split] = self._stream_dataset(split, combine)
            return
        super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)
        monolingual = self.datasets[split]
        limit = self.args.tokens_per_sample
        sizes = block_sizes(monolingual.dataset)
        longest = int(sizes.max()) if len(sizes) else 0
        if self.args.sample_break_mode not in (None, "none") and longest > limit:
            # a line longer than --tokens-per-sample is one over-long block: cut it, losing nothing
            pieces = SplitBlockDataset(monolingual.dataset, limit)
            logger.info(f"{split}: {int((sizes > limit).sum())} blocks longer than "
                        f"--tokens-per-sample {limit} (lines up to {longest} tokens, --sample-break-mode "
                        f"{self.args.sample_break_mode}) cut into pieces of at most {limit} tokens")
            monolingual.dataset = pieces
            monolingual.sizes = pieces.sizes
        if is_train and self._variable_blocks:
            blocks = VariableBlockDataset(monolingual.dataset, self.args.variant_block_multiple_min,
                                          self.args.variant_block_multiple_max, seed=self.args.seed + epoch)
            monolingual.dataset = blocks
            monolingual.sizes = blocks.sizes
            logger.info(f"{split}: {len(blocks)} blocks of {blocks.sizes.min()}-{blocks.sizes.max()} tokens "
                        f"(epoch {epoch})")

    def _stream_dataset(self, split, combine):
        paths = self.args.data.split(":")
        tokens = data_utils.load_indexed_dataset(f"{paths[0]}/{split}", self.dictionary, self.args.dataset_impl,
                                                 combine=combine)
        if tokens is None:
            raise FileNotFoundError(f"Dataset not found: {split} ({paths[0]}/{split})")
        stream = torch.cat([tokens[i] for i in range(len(tokens))])
        segment = self.args.eval_segment_length or self.args.tokens_per_sample * self.args.variant_block_multiple_max
        dataset = StreamSegmentDataset(stream, self.args.eval_streams, segment, self.dictionary.pad(),
                                       self.dictionary.eos())
        logger.info(f"{split}: {stream.numel()} tokens in {dataset.num_streams} streams of "
                    f"{dataset.num_segments} segments x {segment} tokens")
        return dataset

    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, max_positions=None,
                           ignore_invalid_inputs=False, *args, num_shards=1, shard_id=0, num_workers=0, epoch=1,
                           **kwargs):
        if isinstance(dataset, StreamSegmentDataset):
            # segments must reach the model in order: no shuffling, no filtering, sharded by stream
            return StreamBatchIterator(dataset=dataset, collate_fn=dataset.collater,
                                       batch_sampler=dataset.batches(num_shards, shard_id), num_workers=0,
                                       epoch=epoch, disable_shuffling=True,
                                       dummy_batch=lambda: self._dummy_batch(dataset))
        is_train = self.is_training_dataset(dataset)
        if is_train:
            self._check_training_blocks_fit(dataset, max_tokens, max_positions)
        else:
            self._check_evaluation_blocks_fit(dataset, max_positions)
        iterator = super().get_batch_iterator(dataset, max_tokens, max_sentences, max_positions,
                                              ignore_invalid_inputs, *args, num_shards=num_shards,
                                              shard_id=shard_id, num_workers=num_workers, epoch=epoch, **kwargs)
        if is_train:
            self._train_iterator = iterator
        return iterator

    def _check_training_blocks_fit(self, dataset, max_tokens, max_positions):
        """fairseq's training iterator skips (with ignore_invalid_inputs) or fails on blocks over
        --max-tokens or the model's positions; training must see every token, so say which flag
        to change instead."""
        sizes = np.asarray(dataset.sizes)
        if sizes.size == 0:
            return
        longest = int(sizes.max())
        blocks = (f"training blocks reach {longest} tokens (--tokens-per-sample {self.args.tokens_per_sample} "
                  f"x --variant-block-multiple-max {self.args.variant_block_multiple_max})")
        if max_tokens is not None and longest > max_tokens:
            raise ValueError(f"{blocks} but --max-tokens is {max_tokens}: raise --max-tokens to at least {longest}, "
                             f"or lower --tokens-per-sample or --variant-block-multiple-max")
        if isinstance(max_positions, (int, np.integer)) and longest > max_positions:
            raise ValueError(f"{blocks} but the model takes at most {max_positions} positions: raise "
                             f"--max-target-positions to at least {longest}, or lower --tokens-per-sample or "
                             f"--variant-block-multiple-max")

    def _check_evaluation_blocks_fit(self, dataset, max_positions):
        """fairseq-eval-lm skips blocks longer than the model's positions (with a warning) and
        reports the perplexity of the rest; fairseq-validate fails suggesting to skip them. A
        perplexity must cover every token: say which flag to change instead."""
        if isinstance(dataset, LMContextWindowDataset):
            # fairseq-eval-lm --context-window C: blocks of --tokens-per-sample minus C tokens (it
            # lowers the task's value), each fed with up to C tokens before it
            context = dataset.context_window
            sizes = np.asarray(dataset.dataset.sizes, dtype=np.int64) + context
            source = f"--tokens-per-sample {self.args.tokens_per_sample + context}, --context-window {context} included"
        else:
            sizes, source = np.asarray(dataset.sizes), f"--tokens-per-sample {self.args.tokens_per_sample}"
        if not isinstance(max_positions, (int, np.integer)) or sizes.size == 0 or sizes.max() <= max_positions:
            return
        raise ValueError(f"{int((sizes > max_positions).sum())} of {sizes.size} evaluation blocks are longer than the "
                         f"model's {max_positions} positions (blocks of up to {int(sizes.max())} tokens from "
                         f"{source}): evaluate with --tokens-per-sample {max_positions} or less, or with "
                         f"--eval-streams, which feeds long streams segment by segment (a model with "
                         f"--decoder-chunk-size > 0)")

    def _dummy_batch(self, stream_dataset: StreamSegmentDataset):
        """What fairseq's trainer keeps, after a validation, for padded or empty steps: the first
        training batch (what it kept before), or where there is no training iterator, one row of
        the first stream as a plain batch of at most --tokens-per-sample tokens (no
        ``first_segment``: it never touches the model's stream state)."""
        if self._train_iterator is not None:
            batch = self._train_iterator.first_batch
            if isinstance(batch, dict) and batch:
                return batch
        source, target = stream_dataset.streams[0]
        n = max(1, min(len(target), self.args.tokens_per_sample))
        target = target[:n]
        return {
            "id": torch.LongTensor([0]),
            "nsentences": 1,
            "ntokens": int(target.numel()),
            "net_input": {"src_tokens": source[:n].unsqueeze(0), "src_lengths": torch.LongTensor([n])},
            "target": target.unsqueeze(0),
        }

    def eval_lm_dataloader(self, dataset, max_tokens: Optional[int] = 36000, batch_size: Optional[int] = None,
                           max_positions: Optional[int] = None, num_shards: int = 1, shard_id: int = 0,
                           num_workers: int = 1, data_buffer_size: int = 10, context_window: int = 0):
        if not isinstance(dataset, StreamSegmentDataset):
            return super().eval_lm_dataloader(dataset, max_tokens, batch_size, max_positions, num_shards, shard_id,
                                              num_workers, data_buffer_size, context_window)
        if context_window > 0:
            raise ValueError("--context-window and --eval-streams are exclusive: streams already carry the "
                             "whole history")
        return self.get_batch_iterator(dataset, num_shards=num_shards, shard_id=shard_id).next_epoch_itr(
            shuffle=False)
