"""Lengths, chunk sizes and truncation: each setting either works as documented or stops the run
before training or evaluation with a message naming the flag to change.

- A chunk size that does not divide the input length works (the sequence is padded to whole
  chunks internally), for a language model and for fixed-length images.
- ``--truncation-length 0`` (the official recipes' spelling) means no truncation.
- Evaluation blocks longer than a language model's positions: an error naming
  ``--tokens-per-sample`` (fairseq-eval-lm would skip them and report the perplexity of the rest).
- A simple relative bias evaluated with another chunk size: an error naming the chunk-size flags.
- ``--encoder-chunk-size 0``: an error naming the flag.
- Inputs longer than a classifier's ``--max-positions``: an error naming it and
  ``--shorten-method`` (with ``truncate``, training runs); translation sources longer than
  ``--max-source-positions``: fairseq's error before training.
"""

import re

import pytest

from helpers import USER_DIR
from helpers.fairseq_jobs import run_jobs
from helpers.tiny import write_listops, write_pathfinder

TRAIN = ["--user-dir", USER_DIR, "--no-progress-bar", "--log-format", "simple", "--num-workers", "0", "--optimizer",
         "adam", "--lr", "1e-3", "--max-update", "2", "--no-epoch-checkpoints", "--required-batch-size-multiple", "1",
         "--batch-size", "4", "--cpu", "--seed", "1"]
LM = ["--task", "mega_language_modeling", "--arch", "mega_lm_tiny"]
MT = ["--task", "translation", "--source-lang", "src", "--target-lang", "tgt", "--arch", "mega_mt_tiny"]
CLS = ["--task", "mega_sequence_classification", "--criterion", "sentence_prediction", "--arch",
       "mega_classifier_tiny"]


def eval_lm(data, checkpoint, *extra):
    return ["eval_lm", [str(data), "--user-dir", USER_DIR, "--path", str(checkpoint), "--task",
                        "mega_language_modeling", "--cpu", "--required-batch-size-multiple", "1", "--batch-size", "4",
                        "--num-workers", "0", *extra]]


CASES = {  # name -> (job, outcome: None for success, else a pattern the error must match)
    "lm_chunk_not_dividing_no_truncation": (
        lambda d: ["train", [d["lm"], *TRAIN, *LM, "--tokens-per-sample", "64", "--decoder-chunk-size", "24",
                             "--truncation-length", "0", "--save-dir", d["out"] / "lm24"]], None),
    "lm_eval_chunk_not_dividing": (
        lambda d: eval_lm(d["lm"], d["out"] / "lm24" / "checkpoint_last.pt", "--tokens-per-sample", "64"), None),
    "lm_full_attention": (
        lambda d: ["train", [d["lm"], *TRAIN, *LM, "--tokens-per-sample", "32", "--decoder-chunk-size", "-1",
                             "--save-dir", d["out"] / "lm32"]], None),
    "lm_eval_blocks_longer_than_positions": (
        lambda d: ["expect_error", *eval_lm(d["lm"], d["out"] / "lm32" / "checkpoint_last.pt",
                                            "--tokens-per-sample", "64")],
        r"evaluation blocks are longer than the model's 32 positions .* --tokens-per-sample 32 or less"),
    "lm_eval_other_chunk_with_simple_bias": (
        lambda d: ["expect_error", *eval_lm(d["lm"], d["out"] / "lm24" / "checkpoint_last.pt",
                                            "--tokens-per-sample", "64", "--model-overrides",
                                            "{'decoder_chunk_size': 16}")],
        r"rel_pos_bias: the checkpoint's simple relative position bias covers 24 positions .* this model 16: "
        r".*--decoder-chunk-size.*--rel-pos-bias rotary"),
    "mt_chunk_size_zero": (
        lambda d: ["expect_error", "train", [d["mt"], *TRAIN, *MT, "--encoder-chunk-size", "0",
                                             "--save-dir", d["out"] / "mt0"]],
        r"^ValueError: --encoder-chunk-size must be positive .* or negative .*, got 0"),
    "mt_source_longer_than_positions": (
        lambda d: ["expect_error", "train", [d["mt"], *TRAIN, *MT, "--max-source-positions", "4",
                                             "--save-dir", d["out"] / "mt4"]],
        r"is invalid .* since max_positions=\(4, .*--skip-invalid-size-inputs-valid-test"),
    "cls_longer_than_max_positions": (
        lambda d: ["expect_error", "train", [d["listops"], *TRAIN, *CLS, "--num-classes", "10", "--max-positions",
                                             "20", "--save-dir", d["out"] / "cls20"]],
        r"longer than --max-positions 20 .*--shorten-method truncate"),
    "cls_truncated_to_max_positions": (
        lambda d: ["train", [d["listops"], *TRAIN, *CLS, "--num-classes", "10", "--max-positions", "20",
                             "--shorten-method", "truncate", "--save-dir", d["out"] / "cls20t"]], None),
    "pixels_chunk_not_dividing_no_truncation": (
        lambda d: ["train", [d["pathfinder"], *TRAIN, *CLS, "--num-classes", "2", "--input-type", "pixels",
                             "--max-positions", "256", "--encoder-chunk-size", "100", "--truncation-length", "0",
                             "--save-dir", d["out"] / "pixels"]], None),
}
SAVE_DIRS = {"mt_chunk_size_zero": "mt0", "mt_source_longer_than_positions": "mt4",
             "cls_longer_than_max_positions": "cls20"}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, lm_data, mt_data):
    root = tmp_path_factory.mktemp("startup")
    data = {"lm": lm_data, "mt": mt_data, "out": root, "listops": write_listops(root / "listops"),
            "pathfinder": write_pathfinder(root / "pathfinder", size=16)}
    jobs = [CASES[name][0](data) for name in CASES]
    done = run_jobs(jobs, root / "jobs", merged=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    results = {}
    for number, name in enumerate(CASES):
        status = done.status(number)
        assert status, f"{name}: no result\n{output[-4000:]}"
        results[name] = status.partition(": ")[2] or None  # the error, or None for "JOB OK n"
    return root, results, output


@pytest.mark.parametrize("name", list(CASES))
def test_setting_works_or_fails_at_start_naming_the_flag(outcomes, name):
    root, results, output = outcomes
    expected = CASES[name][1]
    if expected is None:
        assert results[name] is None, f"{name} failed: {results[name]}"
    else:
        assert results[name] is not None, f"{name} did not fail"
        assert re.search(expected, results[name]), results[name]
        if name in SAVE_DIRS:  # stopped before training: nothing saved
            assert not (root / SAVE_DIRS[name] / "checkpoint_last.pt").exists()


def test_chunk_not_dividing_evaluates_every_token(outcomes, lm_data):
    """The LM with chunk 24 on blocks of 64: fairseq-eval-lm scores every token of the test split."""
    from fairseq.data import data_utils

    _, results, output = outcomes
    evaluated = re.findall(r"Evaluated ([\d,]+) tokens", output)
    test = data_utils.load_indexed_dataset(str(lm_data / "test"), None)  # kept: its sizes are a view of its file
    tokens = int(test.sizes.sum())
    assert evaluated and int(evaluated[0].replace(",", "")) == tokens, (evaluated, tokens)
