"""Text classification on a user's own data, through the commands a user runs: a folder of TSVs
with word labels (train.tsv, valid.tsv, test.tsv) read by fairseq-train and fairseq-validate
directly and after scripts/prepare_lra.sh tsv; fairseq's sentence_prediction layout made by
fairseq-preprocess (word ids ending in </s>, unseen words as <unk>, label/dict.txt); and the
classifier hub's .predict() / .predict_label() on raw text against the model's forward on each
form's own batches and fairseq-validate's accuracy. Bad rows and mismatched flags stop before
training, naming the file and line or the flag."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import ROOT, USER_DIR
from helpers.classifier import task_logits
from helpers.fairseq_jobs import driver_outputs, run
from helpers.tiny import write_text_tsv
from mega_fairseq.data import lra
from mega_fairseq.data.classification import DataError, detect_format
from mega_fairseq.data.examples import load_split
from mega_fairseq.hub import ClassifierHubInterface
from mega_fairseq.models.mega_classifier import MegaSequenceClassifier
from mega_fairseq.tasks.mega_sequence_classification import SequenceClassificationConfig, SequenceClassificationTask

LABELS = ["negative", "neutral", "positive"]
COMMON = ["--user-dir", USER_DIR, "--task", "mega_sequence_classification", "--num-classes", "3", "--num-workers",
          "0", "--required-batch-size-multiple", "1", "--no-progress-bar", "--log-format", "simple", "--cpu"]
TRAIN = ["--arch", "mega_classifier_tiny", "--criterion", "sentence_prediction", "--optimizer", "adam", "--lr", "1e-3",
         "--batch-size", "8", "--max-update", "3", "--seed", "1", "--no-epoch-checkpoints",
         "--disable-validation"]  # last: a job that reads the valid split leaves it out


def fairseq_preprocess(*args):
    """fairseq-preprocess in this process (its import is paid once)."""
    from fairseq import options
    from fairseq_cli import preprocess

    preprocess.main(options.get_preprocessing_parser().parse_args([str(a) for a in args] + ["--workers", "1"]))


def write_sentence_prediction(tsv: Path, out: Path) -> Path:
    """fairseq's sentence_prediction layout of the TSVs, as its README makes it: fairseq-preprocess
    of the texts (input0/, a dictionary of the training words, </s> after each line) and of the
    label words (label/dict.txt, label/{split}.{bin,idx})."""
    raw = out / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        rows = [line.split("\t") for line in (tsv / f"{split}.tsv").read_text().splitlines()[1:]]
        (raw / f"{split}.input0").write_text("".join(f"{text}\n" for text, _ in rows))
        (raw / f"{split}.label").write_text("".join(f"{label}\n" for _, label in rows))
    for kind in ("input0", "label"):
        fairseq_preprocess("--only-source", "--trainpref", raw / f"train.{kind}", "--validpref", raw / f"valid.{kind}",
                           "--testpref", raw / f"test.{kind}", "--destdir", out / kind)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    tsv = write_text_tsv(root / "tsv")
    run(["bash", ROOT / "scripts" / "prepare_lra.sh", "tsv", tsv, root / "prepared"])
    bad = write_text_tsv(root / "bad")
    lines = (bad / "valid.tsv").read_text().splitlines()
    lines[3] = lines[3].split("\t")[0] + "\tpositve"
    (bad / "valid.tsv").write_text("\n".join(lines) + "\n")
    return {"root": root, "tsv": tsv, "prepared": root / "prepared", "bad": bad,
            "preprocessed": write_sentence_prediction(tsv, root / "preprocessed")}


@pytest.fixture(scope="module")
def driven(data):
    """Every fairseq command in one process (tests/helpers/fairseq_jobs.py): {job name: its output}."""
    root = data["root"]
    jobs = {
        "train_tsv": ["train", [data["tsv"], *COMMON, *TRAIN, "--save-dir", root / "tsv_ck"]],
        "validate_tsv": ["validate", [data["tsv"], *COMMON, "--path", root / "tsv_ck" / "checkpoint_last.pt",
                                      "--valid-subset", "test", "--batch-size", "5"]],
        "validate_prepared": ["validate", [data["prepared"], *COMMON, "--path", root / "tsv_ck" / "checkpoint_last.pt",
                                           "--model-overrides", str({"data": str(data["prepared"])}),
                                           "--valid-subset", "test", "--batch-size", "5"]],
        "train_preprocessed": ["train", [data["preprocessed"], *COMMON, *TRAIN, "--save-dir", root / "pre_ck"]],
        "validate_preprocessed": ["validate", [data["preprocessed"], *COMMON, "--path",
                                               root / "pre_ck" / "checkpoint_last.pt", "--valid-subset", "test",
                                               "--batch-size", "5"]],
        "bytes_on_words": ["expect_error", "train", [data["preprocessed"], *COMMON, *TRAIN, "--input-type", "bytes",
                                                     "--save-dir", root / "bytes_ck"]],
        "two_classes": ["expect_error", "train", [data["tsv"], *COMMON, *TRAIN, "--num-classes", "2",
                                                  "--save-dir", root / "two_ck"]],
        "bad_label": ["expect_error", "train", [data["bad"], *COMMON, *TRAIN[:-1], "--save-dir", root / "bad_ck"]],
    }
    outputs = driver_outputs(list(jobs.values()), root)
    return {name: error_message(output) or output for name, output in zip(jobs, outputs)}


def error_message(output: str):
    """The "Type: message" of a job that failed as expected, or None."""
    found = re.search(r"^JOB ERROR \d+: (.*)$", output, re.M)
    return found and found.group(1)


def accuracy(output: str) -> float:
    found = re.findall(r"valid on 'test' subset .*?\| accuracy ([0-9.]+)", output)
    assert found, output[-2000:]
    return float(found[-1])



def raw_rows(data, split="test"):
    rows = [line.split("\t") for line in (data["tsv"] / f"{split}.tsv").read_text().splitlines()[1:]]
    return [text for text, _ in rows], [label for _, label in rows]


# ---------------------------------------------------------------- the TSV folder, read directly and prepared


def test_predict_label_on_raw_text_equals_fairseq_validate(data, driven):
    hub = MegaSequenceClassifier.from_pretrained(data["root"] / "tsv_ck", "checkpoint_last.pt", str(data["tsv"]))
    texts, labels = raw_rows(data)
    assert hub.labels == LABELS and any(word.startswith("unseen") for word in " ".join(texts).split())
    logits = hub.predict(texts, return_logits=True, batch_size=3)
    torch.testing.assert_close(logits, task_logits(hub), atol=1e-5, rtol=1e-5)
    words = hub.predict_label(texts)
    assert words == [LABELS[c] for c in logits.argmax(dim=-1).tolist()] and hub.predict_label(texts[1]) == words[1]
    assert hub.predict(texts) == logits.argmax(dim=-1).tolist()  # the classes, as before
    assert abs(100 * np.mean(np.array(words) == labels) - accuracy(driven["validate_tsv"])) < 0.051


def test_prepared_folder_reads_as_the_tsv_folder(data, driven):
    """prepare_lra.sh tsv writes the label words and their dictionary; the model trained on the
    TSV folder validates and predicts the same on it."""
    prepared = data["prepared"]
    assert (prepared / "label" / "dict.txt").read_text() == "negative 12\nneutral 12\npositive 12\n"
    assert (prepared / "label" / "test.label").read_text().splitlines() == raw_rows(data)[1]
    assert json.loads((prepared / "meta.json").read_text())["text"]["unknown"] == "unk"
    assert accuracy(driven["validate_prepared"]) == accuracy(driven["validate_tsv"])
    direct = MegaSequenceClassifier.from_pretrained(data["root"] / "tsv_ck", "checkpoint_last.pt", str(data["tsv"]))
    hub = MegaSequenceClassifier.from_pretrained(data["root"] / "tsv_ck", "checkpoint_last.pt", str(prepared))
    texts = raw_rows(data)[0]
    torch.testing.assert_close(hub.predict(texts, return_logits=True), direct.predict(texts, return_logits=True))
    torch.testing.assert_close(hub.predict(texts, return_logits=True), task_logits(hub), atol=1e-5, rtol=1e-5)


def test_bad_rows_and_class_counts_stop_fairseq_train(data, driven):
    assert driven["two_classes"] == (f"DataError: {data['tsv'] / 'train.tsv'}: 3 labels (negative, neutral, "
                                     f"positive) but --num-classes 2")
    assert driven["bad_label"].startswith(f"DataError: {data['bad'] / 'valid.tsv'}:4: the label 'positve' is not in "
                                          f"the label dictionary ({data['bad'] / 'train.tsv'}: negative, neutral, "
                                          f"positive)")


# ---------------------------------------------------------------- fairseq-preprocess data (sentence_prediction)


def test_predict_on_fairseq_preprocess_data_equals_the_binarised_examples(data, driven):
    """The binarised examples end with </s> and hold <unk> for words training never saw: the hub
    encodes raw text the same way, so its logits are the model's on the binarised test split."""
    hub = MegaSequenceClassifier.from_pretrained(data["root"] / "pre_ck", "checkpoint_last.pt",
                                                 str(data["preprocessed"]))
    texts, labels = raw_rows(data)
    dictionary = hub.task.dictionary
    hub.task.load_dataset("test")
    binarised = hub.task.dataset("test")  # example i at index i (sorting changes the batches only)
    for index, text in enumerate(texts):
        (ids,) = hub.encode(text)
        assert ids[-1] == dictionary.eos() and (dictionary.unk() in ids) == ("unseen" in text)
        assert ids.tolist() == binarised[index]["net_input.src_tokens"].tolist()
    logits = hub.predict(texts, return_logits=True, batch_size=3)
    torch.testing.assert_close(logits, task_logits(hub), atol=1e-5, rtol=1e-5)
    # fairseq-preprocess pads label/dict.txt to 8 symbols with madeupword0000: no class
    assert "madeupword0000 0" in (data["preprocessed"] / "label" / "dict.txt").read_text()
    assert sorted(hub.labels) == LABELS
    assert abs(100 * np.mean(np.array(hub.predict_label(texts)) == labels)
               - accuracy(driven["validate_preprocessed"])) < 0.051


def test_bytes_on_word_ids_stops_naming_the_dictionary_and_the_flag(data, driven):
    dictionary = data["preprocessed"] / "input0" / "dict.txt"
    assert driven["bytes_on_words"].startswith(f"DataError: {dictionary}: a dictionary of ")
    assert "not the byte dictionary that --input-type bytes reads" in driven["bytes_on_words"]
    with pytest.raises(DataError, match=f"^{re.escape(str(dictionary))}: the data are token ids .* but --input-type "
                                        f"pixels reads real values"):
        task_for(data["preprocessed"], input_type="pixels")


# ---------------------------------------------------------------- the reader's rules


def task_for(folder: Path, **changes) -> SequenceClassificationTask:
    cfg = SequenceClassificationConfig(**{"data": str(folder), "num_classes": 3, "max_positions": 100, "seed": 1,
                                          "train_subset": "train", **changes})
    return SequenceClassificationTask.setup_task(cfg)


def test_header_and_integer_labels_are_optional(tmp_path):
    plain = write_text_tsv(tmp_path / "plain", header="")
    for split in ("train", "test"):
        rows = (plain / f"{split}.tsv").read_text().replace("\tnegative\n", "\t0\n").replace("\tneutral\n", "\t2\n")
        (plain / f"{split}.tsv").write_text(rows.replace("\tpositive\n", "\t10\n"))
    task = task_for(plain)
    assert task.labels.words == ("0", "2", "10")  # by value: class k is label k where the labels are 0 .. C-1
    labelled = task_for(write_text_tsv(tmp_path / "labelled"))
    task.load_dataset("test")
    labelled.load_dataset("test")
    assert [task.dataset("test")[i]["target"] for i in range(12)] == [
        labelled.dataset("test")[i]["target"] for i in range(12)]


def test_rows_with_the_wrong_fields_name_file_and_line(tmp_path):
    data = write_text_tsv(tmp_path / "data")
    lines = (data / "test.tsv").read_text().splitlines()
    for row, message in ((f"one\ttwo\tthree\t{LABELS[0]}", r":5: 4 tab-separated fields, expected 2 \(text, label; "
                                                           r"3 for a pair, with --paired\)"),
                         (f" \t{LABELS[0]}", ":5: empty text in column 1"), ("great film\t", ":5: empty label")):
        (data / "test.tsv").write_text("\n".join(lines[:4] + [row] + lines[4:]) + "\n")
        with pytest.raises(DataError, match=re.escape(str(data / "test.tsv")) + message):
            task_for(data).load_dataset("test")


def test_pairs_and_bytes(tmp_path):
    data = tmp_path / "pairs"
    data.mkdir()
    for split in ("train", "valid", "test"):
        (data / f"{split}.tsv").write_text("first\tsecond\tlabel\na b\tc\tyes\nd\te f g\tno\nh\th\tyes\n")
    with pytest.raises(ValueError, match="no --paired but .* holds pairs"):
        task_for(data, num_classes=2)
    task = task_for(data, num_classes=2, paired=True, input_type="bytes")
    (first, second), classes = load_split(task.cfg, detect_format(data), data, "test", task.dictionary, task.labels)
    assert [bytes((a - 4).tolist()) for a in second] == [b"c", b"e f g", b"h"] and classes.tolist() == [1, 0, 1]
    assert len(first) == 3 and task.labels.words == ("no", "yes")


def test_sentencepiece_pieces_on_both_paths(data, tmp_path):
    """--sentencepiece-model: the tokens are its pieces, in the TSV folder's reading and in the
    prepared form (which keeps a copy of the model); the hub encodes text as both store it."""
    import sentencepiece as spm

    texts = [line.split("\t")[0] for line in (data["tsv"] / "train.tsv").read_text().splitlines()[1:]]
    (tmp_path / "train.txt").write_text("\n".join(texts) + "\n")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "train.txt"), model_prefix=str(tmp_path / "spm"),
                                   vocab_size=40, hard_vocab_limit=False, minloglevel=2)
    model = str(tmp_path / "spm.model")
    direct = task_for(data["tsv"], sentencepiece_model=model, max_positions=1000)
    assert "▁great" in direct.dictionary.symbols or "▁superb" in direct.dictionary.symbols
    lra.main(["tsv", str(data["tsv"]), str(tmp_path / "prepared"), "--sentencepiece-model", model])
    prepared = task_for(tmp_path / "prepared", max_positions=1000)
    assert (tmp_path / "prepared" / "sentencepiece.model").read_bytes() == Path(model).read_bytes()
    text = raw_rows(data)[0][0]
    for task in (direct, prepared):
        hub = ClassifierHubInterface(None, task, [torch.nn.Linear(1, 1)])
        task.load_dataset("test")
        assert hub.encode(text)[0].tolist() == task.dataset("test")[0]["net_input.src_tokens"].tolist()
