"""The mega_language_modeling task with real fairseq objects: blocks of --sample-break-mode
complete, custom --train-subset/--valid-subset names, and the trainer's dummy batch after a
mid-epoch validation, on tiny data binarised with fairseq-preprocess (in this process). The renamed
splits through fairseq-hydra-train: tests/cli/test_lm_task_cli.py."""

import pytest
import torch
from fairseq import options, tasks, utils

from helpers import USER_DIR
from helpers.tiny import write_long_lines_corpus
from mega_fairseq.tasks.mega_language_modeling import StreamSegmentDataset, VariableBlockDataset

TOKENS_PER_SAMPLE = 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_long_lines_corpus(tmp_path_factory.mktemp("lm_task"))


def parse(data, *extra):
    parser = options.get_training_parser()
    return options.parse_args_and_arch(parser, [
        str(data), "--user-dir", USER_DIR, "--task", "mega_language_modeling", "--arch", "mega_lm_tiny",
        "--tokens-per-sample", str(TOKENS_PER_SAMPLE), "--max-target-positions", "64", "--seed", "1", *extra])


def raw_stream(task, split):
    from fairseq.data import data_utils
    tokens = data_utils.load_indexed_dataset(f"{task.args.data}/{split}", task.dictionary)
    return torch.cat([tokens[i] for i in range(len(tokens))])


def training_epoch(task, model, split, max_tokens):
    """The batches of one training epoch, from the epoch batch iterator as fairseq's trainer builds
    it (Trainer.get_train_iterator: ignore_invalid_inputs, max_positions resolved with max_tokens)."""
    itr = task.get_batch_iterator(
        dataset=task.dataset(split), max_tokens=max_tokens,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions(), max_tokens),
        ignore_invalid_inputs=True, seed=1, epoch=1)
    return list(itr.next_epoch_itr(shuffle=True))


# ---------------------------------------------------------------- --sample-break-mode complete


@pytest.mark.parametrize("variable", [True, False])
def test_complete_break_mode_trains_on_every_token(data, variable):
    """A line longer than --tokens-per-sample is one over-long block in complete mode, and a group
    of them (variable blocks) exceeds --max-tokens: fairseq's iterator would skip them. Every
    token of the split is a target exactly once, each predicted from the token before it."""
    multiples = ["--variant-block-multiple-min", "2", "--variant-block-multiple-max", "4"] if variable else []
    args = parse(data, "--sample-break-mode", "complete", "--max-tokens", "64", *multiples)
    task = tasks.setup_task(args)
    model = task.build_model(args)
    task.load_dataset("train", epoch=1)
    dataset = task.dataset("train")
    assert isinstance(dataset.dataset, VariableBlockDataset) == variable
    stream = raw_stream(task, "train")
    assert stream.numel() > 1000

    pad = task.dictionary.pad()
    targets, sources = {}, {}
    for batch in training_epoch(task, model, "train", max_tokens=64):
        assert batch["net_input"]["src_tokens"].numel() <= 64
        for row, index in enumerate(batch["id"].tolist()):
            keep = batch["target"][row].ne(pad)
            targets[index] = batch["target"][row][keep]
            sources[index] = batch["net_input"]["src_tokens"][row][keep]
    seen = sum(t.numel() for t in targets.values())
    assert seen == stream.numel(), f"one training epoch saw {seen} of the split's {stream.numel()} tokens"
    order = sorted(targets)
    assert order == list(range(len(dataset)))
    assert torch.equal(torch.cat([targets[i] for i in order]), stream)
    expected_sources = torch.cat([stream.new_tensor([task.dictionary.eos()]), stream[:-1]])
    assert torch.equal(torch.cat([sources[i] for i in order]), expected_sources)


def test_blocks_over_max_tokens_are_a_clear_error(data):
    """Training blocks reach 16 x 4 = 64 tokens: with --max-tokens 48 fairseq's iterator would
    skip every longer one with a warning; the task names the flag instead."""
    args = parse(data, "--variant-block-multiple-min", "2", "--variant-block-multiple-max", "4",
                 "--max-tokens", "48")
    task = tasks.setup_task(args)
    model = task.build_model(args)
    task.load_dataset("train", epoch=1)
    with pytest.raises(ValueError, match="raise --max-tokens to at least 64"):
        training_epoch(task, model, "train", max_tokens=48)


# ---------------------------------------------------------------- --train-subset / --valid-subset


def check_split_roles(task, train, valid):
    task.load_dataset(train, epoch=1)
    task.load_dataset(valid, epoch=1)
    trained, evaluated = task.dataset(train), task.dataset(valid)
    assert isinstance(getattr(trained, "dataset", None), VariableBlockDataset), \
        f"the training split {train} did not get variable blocks but {type(trained).__name__}"
    assert isinstance(evaluated, StreamSegmentDataset), \
        f"the validation split {valid} did not get stream evaluation but {type(evaluated).__name__}"
    assert task.has_sharded_data(train) and not task.has_sharded_data(valid)


@pytest.mark.parametrize("train,valid", [("mytrain", "myvalid"), ("mytrain", "train")])
def test_custom_subset_names(data, train, valid):
    """The training split (variable blocks) is the one --train-subset names, whatever its name;
    every other split (here one literally named "train") is evaluated in streams; both through
    an argparse Namespace and through the omegaconf config fairseq-train builds from it."""
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = parse(data, "--train-subset", train, "--valid-subset", valid, "--variant-block-multiple-max", "3",
                 "--eval-streams", "2")
    check_split_roles(tasks.setup_task(args), train, valid)
    cfg = convert_namespace_to_omegaconf(args)
    check_split_roles(tasks.setup_task(cfg.task), train, valid)


# ---------------------------------------------------------------- the trainer's dummy batch


def trainer_for(data, save_dir, *extra):
    """fairseq-train's setup (fairseq_cli.train.main), in process, to inspect the trainer."""
    from fairseq import checkpoint_utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.logging import metrics
    from fairseq.trainer import Trainer

    args = parse(data, "--variant-block-multiple-max", "2", "--max-tokens", "64", "--eval-streams", "2",
                 "--optimizer", "adam", "--lr", "1e-3", "--cpu", "--num-workers", "0", "--save-dir", str(save_dir),
                 "--no-save", "--log-format", "simple", "--log-interval", "1", *extra)
    cfg = convert_namespace_to_omegaconf(args)
    metrics.reset()
    utils.set_torch_seed(1)
    task = tasks.setup_task(cfg.task)
    for valid in cfg.dataset.valid_subset.split(","):
        task.load_dataset(valid, combine=False, epoch=1)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    trainer = Trainer(cfg, task, model, criterion)
    _, epoch_itr = checkpoint_utils.load_checkpoint(cfg.checkpoint, trainer)
    return cfg, task, trainer, epoch_itr


def test_dummy_batch_stays_a_training_batch_after_mid_epoch_validation(data, tmp_path):
    """--save-interval-updates 1 validates after every update, mid-epoch; fairseq's trainer then
    keeps the validation iterator's first batch as the dummy batch that padded or empty steps
    (training included) run. It must stay a training batch, never a stream batch."""
    from fairseq_cli.train import train

    cfg, task, trainer, epoch_itr = trainer_for(data, tmp_path, "--max-update", "2", "--save-interval-updates", "1")
    first_train_batch = epoch_itr.first_batch
    assert len(epoch_itr) > 2  # the validations are mid-epoch
    train(cfg, trainer, task, epoch_itr)
    assert trainer.get_num_updates() == 2
    dummy = trainer._dummy_batch
    assert "first_segment" not in dummy["net_input"], "the trainer's dummy batch is a stream (validation) batch"
    assert torch.equal(dummy["net_input"]["src_tokens"], first_train_batch["net_input"]["src_tokens"])
    assert dummy["net_input"]["src_tokens"].numel() <= cfg.dataset.max_tokens
    # an empty step (what a rank with no batch left runs) trains on the dummy batch, ignoring its gradients
    trainer.train_step([{}])
    assert trainer.get_num_updates() == 3


def test_each_validation_starts_from_a_fresh_stream_state(data, tmp_path):
    """The decoder's stream state (kept across the segments of one validation) is reset by the
    first segment of the next validation: leaving it mid-stream changes nothing."""
    cfg, task, trainer, _ = trainer_for(data, tmp_path)
    model, criterion = trainer.model, trainer.criterion

    def validate():
        itr = trainer.get_valid_iterator("valid").next_epoch_itr(shuffle=False, set_dataset_epoch=False)
        return torch.stack([task.valid_step(sample, model, criterion)[0] for sample in itr])

    first = validate()
    assert len(first) > 2
    # run a later segment alone, so that the model's stream state is not where the last validation left it
    batches = list(trainer.get_valid_iterator("valid").next_epoch_itr(shuffle=False))
    assert not batches[1]["net_input"]["first_segment"].any()
    task.valid_step(batches[1], model, criterion)
    assert torch.equal(validate(), first)
