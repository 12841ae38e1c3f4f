"""A checkpoint that is not what a command needs is an error naming the file, what it holds and
what was expected, printed last: a language model, a translation model or a classifier given to the
evaluation script of another kind (checked before fairseq runs, by python -m
mega_fairseq.checkpoint_info), and inside fairseq a model built for a task of another kind, a
checkpoint trained with another dictionary (fine-tuning, evaluating), a file that holds no
checkpoint; and an empty language-modelling training file is named. Tiny checkpoints of one
update each, every fairseq job in one process (tests/helpers/fairseq_jobs.py)."""

import re

import pytest
import torch

from helpers import ROOT, USER_DIR
from helpers.fairseq_jobs import driver_outputs, run
from helpers.tiny import write_listops
from mega_fairseq import checkpoint_info
from mega_fairseq.checkpoint_errors import EXPECTED_CHECKPOINT, FAMILIES

SCRIPTS = ROOT / "scripts"
COMMON = ["--user-dir", USER_DIR, "--no-progress-bar", "--log-format", "simple", "--num-workers", "0"]
TRAIN = ["--optimizer", "adam", "--lr", "1e-3", "--max-update", "1", "--no-epoch-checkpoints", "--disable-validation",
         "--required-batch-size-multiple", "1", "--batch-size", "4", "--cpu"]
LM_TASK = ["--task", "mega_language_modeling", "--tokens-per-sample", "32"]
MT_TASK = ["--task", "translation", "--source-lang", "src", "--target-lang", "tgt"]
JOBS = ("preprocess other dictionary", "preprocess empty train", "train lm", "train mt", "train cls",
        "fine-tune with another dictionary", "train on an empty file", "evaluate with another dictionary",
        "generate with a language model", "evaluate a classifier as a language model", "validate a text file")


@pytest.fixture(scope="module")
def driven(tmp_path_factory, lm_data, mt_data):
    """Three tiny checkpoints (language model, translation, classifier) and the fairseq jobs that
    misuse them, in one process; returns (folder, {job: output})."""
    root = tmp_path_factory.mktemp("checkpoint_errors")
    raw = lm_data.parent  # the text lm_data was binarised from
    listops = write_listops(root / "listops", counts=(24, 8, 8), lengths=(10, 30))
    (root / "empty.txt").write_text("")
    (root / "notes.pt").write_text("the best checkpoint is the one of epoch 3\n")
    lm_args = [str(lm_data), *COMMON, *LM_TASK, "--arch", "mega_lm_tiny", *TRAIN]
    other, empty = root / "other_dictionary", root / "empty_train"
    jobs = [
        ["preprocess", ["--only-source", "--trainpref", raw / "train.txt", "--validpref", raw / "valid.txt",
                        "--destdir", other, "--thresholdsrc", "5", "--workers", "1"]],
        ["preprocess", ["--only-source", "--trainpref", root / "empty.txt", "--validpref", raw / "valid.txt",
                        "--srcdict", lm_data / "dict.txt", "--destdir", empty, "--workers", "1"]],
        ["train", lm_args + ["--save-dir", root / "lm"]],
        ["train", [str(mt_data), *COMMON, *MT_TASK, "--arch", "mega_mt_tiny", *TRAIN, "--save-dir", root / "mt"]],
        ["train", [str(listops), *COMMON, "--task", "mega_sequence_classification", "--num-classes", "10",
                   "--max-positions", "64", "--arch", "mega_classifier_tiny", "--criterion", "sentence_prediction",
                   *TRAIN, "--save-dir", root / "cls"]],
        ["expect_error", "train", [str(other), *lm_args[1:], "--save-dir", root / "finetuned",
                                   "--finetune-from-model", root / "lm" / "checkpoint_last.pt"]],
        ["expect_error", "train", [str(empty), *lm_args[1:], "--save-dir", root / "empty_run"]],
        ["expect_error", "eval_lm", [str(other), *COMMON, *LM_TASK, "--path", root / "lm" / "checkpoint_last.pt",
                                     "--gen-subset", "valid", "--cpu"]],
        ["expect_error", "generate", [str(mt_data), *COMMON, *MT_TASK, "--path", root / "lm" / "checkpoint_last.pt",
                                      "--gen-subset", "test", "--beam", "1", "--cpu"]],
        ["expect_error", "eval_lm", [str(lm_data), *COMMON, *LM_TASK, "--path", root / "cls" / "checkpoint_last.pt",
                                     "--gen-subset", "valid", "--cpu"]],
        ["expect_error", "validate", [str(listops), *COMMON, "--task", "mega_sequence_classification",
                                      "--path", root / "notes.pt", "--batch-size", "4", "--cpu"]],
    ]
    return root, dict(zip(JOBS, driver_outputs(jobs, root)))


def checkpoint(driven, kind):
    return driven[0] / kind / "checkpoint_last.pt"


def error_of(output: str) -> str:
    """The message of a job the driver expected to fail."""
    found = re.search(r"^JOB ERROR \d+: (\w+): (.*)$", output, re.M)
    assert found, output[-3000:]
    return found.group(2)


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


# ---------------------------------------------------------------- the evaluation scripts, before fairseq


@pytest.mark.parametrize("script,data,kind,holds,expected", [
    ("eval_cls.sh", "listops", "lm", "a language model (--arch mega_lm_tiny, task mega_language_modeling)",
     "expected a sequence classifier"),
    ("eval_lm.sh", "lm_data", "cls", "a sequence classifier (--arch mega_classifier_tiny, task "
                                     "mega_sequence_classification)", "expected a language model"),
    ("eval_bleu.sh", "wmt_layout", "lm", "a language model (--arch mega_lm_tiny, task mega_language_modeling)",
     "expected a translation model"),
])
def test_an_evaluation_script_names_a_checkpoint_of_another_kind(driven, lm_data, tmp_path, script, data, kind,
                                                                 holds, expected):
    """The script's check prints one line, the error, and fairseq does not run."""
    folders = {"listops": driven[0] / "listops", "lm_data": lm_data, "wmt_layout": tmp_path}
    if data == "wmt_layout":  # what eval_bleu.sh checks before reading the checkpoint: empty files suffice
        for name in ("bin/dict.en.txt", "bin/dict.de.txt", "bin/test.en-de.en.idx", "spm.model"):
            (tmp_path / name).parent.mkdir(exist_ok=True)
            (tmp_path / name).touch()
    code, output = run(["bash", SCRIPTS / script, checkpoint(driven, kind), folders[data]], env={"CPU": "1"},
                       check=False)
    assert code == 2, output[-3000:]
    assert last_line(output).startswith(f"{script}: error: {checkpoint(driven, kind)} holds {holds}; {expected} ("), \
        output[-3000:]
    assert "fairseq" not in output.replace("mega_fairseq", "") and len(output) < 600, output[-3000:]


@pytest.mark.parametrize("kind,expect,holds,hint", [
    ("mt", "classifier", "a translation model (--arch mega_mt_tiny, task translation)", "scripts/eval_bleu.sh"),
    ("mt", "language_model", "a translation model (--arch mega_mt_tiny, task translation)", "scripts/eval_bleu.sh"),
    ("cls", "translation", "a sequence classifier (--arch mega_classifier_tiny, task mega_sequence_classification)",
     "scripts/eval_cls.sh"),
])
def test_the_scripts_check_names_every_other_kind(driven, capsys, kind, expect, holds, hint):
    """The check the scripts run (in this process: its command line, as the scripts call it)."""
    with pytest.raises(SystemExit) as exit_info:
        checkpoint_info.main([str(checkpoint(driven, kind)), "--expect", expect, "--prog", "eval.sh"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"eval.sh: error: {checkpoint(driven, kind)} holds {holds}; expected "
                            f"{FAMILIES[expect].description}") and error.endswith(hint), error
    checkpoint_info.main([str(checkpoint(driven, kind)), "--expect", {"mt": "translation", "cls": "classifier"}[kind]])
    assert capsys.readouterr().out.strip().endswith(holds)


def write_not_checkpoints(folder):
    """File name -> (content writer, what the error says it holds)."""
    (folder / "empty.pt").write_bytes(b"")
    (folder / "text.pt").write_text("hello\n")
    (folder / "binary.pt").write_bytes(bytes(range(16, 80)))
    torch.save(torch.zeros(3), folder / "tensor.pt")
    torch.save({"weights": torch.zeros(3)}, folder / "dict.pt")
    (folder / "truncated.pt").write_bytes((folder / "tensor.pt").read_bytes()[:200])
    return {"empty.pt": "is empty (0 bytes)", "text.pt": "holds text (it begins 'hello')",
            "binary.pt": "holds data torch.save does not write (it begins with the bytes 10 11 12",
            "tensor.pt": "holds a Tensor", "dict.pt": "holds a dict of 'weights' (no 'model' weights)",
            "truncated.pt": "is not a readable checkpoint: torch.load failed"}


def test_a_file_that_is_not_a_checkpoint_is_named(driven, tmp_path, capsys):
    """In every script's check, and inside fairseq (fairseq-validate, as scripts/eval_cls.sh runs it,
    on a text file: before, the weights-only unpickler's `KeyError: 101`)."""
    for name, holds in write_not_checkpoints(tmp_path).items():
        with pytest.raises(SystemExit):
            checkpoint_info.main([str(tmp_path / name), "--expect", "classifier", "--prog", "eval_cls.sh"])
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"eval_cls.sh: error: {tmp_path / name} {holds}") and \
            error.endswith(f"; {EXPECTED_CHECKPOINT}"), error
    text_file = driven[0] / "notes.pt"
    assert error_of(driven[1]["validate a text file"]) == \
        f"{text_file} holds text (it begins 'the best checkpoint is the one of epoch 3'); " \
        f"{EXPECTED_CHECKPOINT}"


# ---------------------------------------------------------------- inside fairseq


def test_a_model_built_for_a_task_of_another_kind_is_named(driven):
    """fairseq-generate (translation) with a language model; fairseq-eval-lm with a classifier."""
    lm, cls = checkpoint(driven, "lm"), checkpoint(driven, "cls")
    assert error_of(driven[1]["generate with a language model"]) == (
        f"{lm} holds a language model (--arch mega_lm_tiny); expected a translation model for the translation "
        f"task (--arch mega_wmt_en_de*, mega_mt_tiny): evaluate language models with scripts/eval_lm.sh")
    assert error_of(driven[1]["evaluate a classifier as a language model"]) == (
        f"{cls} holds a sequence classifier (--arch mega_classifier_tiny); expected a language model for the "
        f"mega_language_modeling task (--arch mega_lm*): evaluate sequence classifiers with scripts/eval_cls.sh")


@pytest.mark.parametrize("job", ["fine-tune with another dictionary", "evaluate with another dictionary"])
def test_a_language_model_of_another_dictionary_is_named(driven, job):
    """Before: fairseq's "please ensure that the architectures match" (fine-tuning) or a size mismatch."""
    other = driven[0] / "other_dictionary" / "dict.txt"
    rows = len((driven[0] / "other_dictionary" / "dict.txt").read_text().splitlines()) + 4
    trained = torch.load(checkpoint(driven, "lm"), weights_only=True)["model"]
    trained_rows = trained["decoder.embedding.embed_tokens.weight"].size(0)
    assert trained_rows != rows
    assert error_of(driven[1][job]) == (
        f"{checkpoint(driven, 'lm')} holds a model trained with another dictionary: its decoder embeddings have "
        f"{trained_rows} rows; expected one trained with {other} ({rows} symbols, the special ones included): use "
        f"the data binarised with the checkpoint's dictionary (fairseq-preprocess --srcdict TRAINING_DATA/dict.txt)")


def test_an_empty_training_file_is_named(driven):
    """Before: numpy's "cannot mmap an empty file", naming no file."""
    assert error_of(driven[1]["train on an empty file"]) == (
        f"{driven[0] / 'empty_train' / 'train.bin'} is empty (0 bytes): the train split holds no tokens; expected "
        f"fairseq-preprocess output of a text file with at least one line (was the train text file empty?)")
