"""Reading the release formats and fairseq's binarised form, and the errors bad data gets: each
names the file and line (or image), raised while loading, before any training."""

import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from helpers.tiny import write_aan, write_cifar10, write_imdb, write_listops, write_pathfinder
from mega_fairseq.data import lra
from mega_fairseq.data.classification import LRA_TASKS, DataError, check_length, detect_format, grayscale, read_cifar10
from mega_fairseq.data.examples import load_split
from mega_fairseq.data.input_types import byte_dictionary, token_dictionary
from mega_fairseq.tasks.mega_sequence_classification import SequenceClassificationTask


def cfg_for(task, **changes):
    return SimpleNamespace(**{**LRA_TASKS[task]._asdict(), **changes})


def load(task, data, split="train", **changes):
    cfg = cfg_for(task, **changes)
    fmt = detect_format(Path(data))
    dictionary = None
    if cfg.input_type == "bytes":
        dictionary = byte_dictionary()
    elif cfg.input_type == "tokens":
        dictionary = token_dictionary(list(fmt.read(Path(data), "train", cfg)))
    return load_split(cfg, fmt, Path(data), split, dictionary), dictionary


def test_listops_release_tsv(tmp_path):
    data = write_listops(tmp_path / "listops")
    (inputs,), labels = load("listops", data)[0]
    assert len(inputs) == len(labels) == 60 and set(labels) <= set(range(10))
    dictionary = load("listops", data)[1]
    first = (data / "basic_train.tsv").read_text().splitlines()[1].split("\t")[0]
    assert dictionary.string(inputs[0]) == " ".join(t for t in first.split() if t not in "()")
    assert {dictionary[i] for i in inputs[0]} <= {"[MAX", "[MIN", "[MED", "[SM", "]", *map(str, range(10))}


def test_imdb_folder_as_bytes(tmp_path):
    data = write_imdb(tmp_path / "aclImdb")
    ((inputs,), labels), dictionary = load("text", data)
    review = (data / "train" / "neg" / "0_" ).parent
    first = sorted(review.glob("0_*.txt"))[0].read_bytes()
    assert list(inputs[0]) == [b + dictionary.nspecial for b in first]
    assert list(labels) == [0] * 12 + [1] * 12
    # LRA has no validation split for Text: valid is the test split
    valid, test = load("text", data, "valid")[0][0][0], load("text", data, "test")[0][0][0]
    assert [list(x) for x in valid] == [list(x) for x in test]


def test_aan_pairs(tmp_path):
    data = write_aan(tmp_path / "tsv_data")
    (first, second), labels = load("retrieval", data, "valid")[0]
    assert len(first) == len(second) == len(labels) == 12 and list(labels[:2]) == [0, 1]
    row = (data / "new_aan_pairs.eval.tsv").read_text().splitlines()[0].split("\t")
    assert bytes(int(b) - 4 for b in second[0]) == row[4].encode()


def test_cifar10_pickles_to_grayscale(tmp_path):
    data = write_cifar10(tmp_path / "cifar", per_batch=10)
    (train,), train_labels = load("image", data)[0]
    (valid,), _ = load("image", data, "valid")[0]
    (test,), _ = load("image", data, "test")[0]
    assert (len(train), len(valid), len(test)) == (45, 5, 10)  # the last 10% of the training images validate
    with open(data / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    rgb = batch[b"data"][0].reshape(3, 1024).astype(float)
    expected = np.floor(0.2989 * rgb[0] + 0.5870 * rgb[1] + 0.1140 * rgb[2] + 0.5)
    assert train[0].dtype == np.uint8 and np.array_equal(train[0], expected)
    assert train_labels[0] == batch[b"labels"][0]


def test_cifar10_pickle_may_not_run_code(tmp_path):
    data = write_cifar10(tmp_path / "cifar")

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(data / "data_batch_2", "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": []}, f)
    with pytest.raises(DataError, match=r"data_batch_2: not a CIFAR-10 batch .*refusing to load builtins.print"):
        list(read_cifar10(data, "train"))


def test_pathfinder_folders(tmp_path):
    data = write_pathfinder(tmp_path / "pf", count=20, size=32)
    sizes = [len(load("pathfinder", data, split)[0][1]) for split in ("train", "valid", "test")]
    assert sizes == [16, 2, 2]  # 80/10/10 in metadata order
    (inputs,), labels = load("pathfinder", data)[0]
    line = sorted((data / "metadata").glob("*.npy"))[0].read_text().splitlines()[0].split()
    image = np.asarray(Image.open(data / line[0] / line[1]))
    assert np.array_equal(inputs[0], image.reshape(-1)) and labels[0] == int(line[3])


def test_path_x_images_of_128_pixels(tmp_path):
    data = write_pathfinder(tmp_path / "pf128", count=4, size=128)
    (inputs,), _ = load("pathx", data)[0]
    assert {len(x) for x in inputs} == {128 * 128}


def test_binarised_form_reads_the_same_as_the_release_files(tmp_path):
    for task, writer in (("listops", write_listops), ("retrieval", write_aan), ("image", write_cifar10)):
        raw = writer(tmp_path / f"raw_{task}")
        out = tmp_path / task
        lra.binarise(task, raw, out)
        cfg = cfg_for(task, data=str(out), data_format="auto", paired=LRA_TASKS[task].paired)
        task_obj = SequenceClassificationTask.setup_task(cfg)
        for split in ("train", "test"):
            (raw_inputs, raw_labels), _ = load(task, raw, split)
            bin_inputs, bin_labels = load_split(cfg, task_obj.format, out, split, task_obj.dictionary)
            assert np.array_equal(raw_labels, bin_labels)
            for raw_docs, bin_docs in zip(raw_inputs, bin_inputs):
                assert len(raw_docs) == len(bin_docs)
                assert all(np.array_equal(a, bin_docs[i].numpy()) for i, a in enumerate(raw_docs))


# ---------------------------------------------------------------- bad input


def listops_with(tmp_path, line_number, text, split="basic_train.tsv"):
    data = write_listops(tmp_path / "listops")
    lines = (data / split).read_text().splitlines()
    lines[line_number - 1] = text
    (data / split).write_text("\n".join(lines) + "\n")
    return data, f"{data / split}:{line_number}"


def test_row_with_the_wrong_number_of_fields(tmp_path):
    data, where = listops_with(tmp_path, 5, "[MAX 1 2 ]\t3\textra")
    with pytest.raises(DataError, match=f"^{where}: 3 tab-separated fields, expected 2$"):
        load("listops", data)


@pytest.mark.parametrize("label", ["x", "0.5", ""])
def test_non_integer_label(tmp_path, label):
    data, where = listops_with(tmp_path, 7, f"[MAX 1 2 ]\t{label}")
    with pytest.raises(DataError, match=f"^{where}: the label '{label}' is not an integer"):
        load("listops", data)


def test_label_outside_the_classes(tmp_path):
    data, where = listops_with(tmp_path, 3, "[MAX 1 2 ]\t10", split="basic_test.tsv")
    with pytest.raises(DataError, match=f"^{where}: the label 10 is outside the 10 classes"):
        load("listops", data, "test")
    data = write_aan(tmp_path / "aan")
    with pytest.raises(DataError, match="the label 1 is outside the 1 classes"):
        load("retrieval", data, num_classes=1)


def test_input_longer_than_the_maximum(tmp_path):
    data, where = listops_with(tmp_path, 2, "[MAX " + "1 " * 30 + "]\t1")
    with pytest.raises(DataError, match=f"^{where}: an input of 32 items is longer than --max-positions 20 "
                                        f"\\(raise it, or pass --shorten-method truncate"):
        load("listops", data, max_positions=20)
    (inputs,), _ = load("listops", data, max_positions=20, shorten_method="truncate")[0]
    assert max(len(x) for x in inputs) == 20


def test_one_truncation_rule_for_inputs_and_clips():
    """check_length decides for every reader (read_clip's samples too), the task and the hub."""
    refuse, truncate = SimpleNamespace(max_positions=4), SimpleNamespace(max_positions=4, shorten_method="truncate")
    assert [check_length(n, refuse, "x") for n in (1, 4)] == [1, 4]
    assert check_length(9, truncate, "x") == 4
    with pytest.raises(DataError, match=r"^x: an input of 9 items is longer than --max-positions 4 \(raise it, "
                                        r"or pass --shorten-method truncate to keep the first 4 items\)$"):
        check_length(9, refuse, "x")
    with pytest.raises(DataError, match="^x: empty input$"):
        check_length(0, truncate, "x")


def test_pixel_out_of_range(tmp_path):
    data = write_cifar10(tmp_path / "cifar")
    with open(data / "data_batch_3", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    values = batch[b"data"].astype(np.int64)
    values[5, 100] = 300
    batch[b"data"] = values
    with open(data / "data_batch_3", "wb") as f:
        pickle.dump(batch, f)
    with pytest.raises(DataError, match=r"data_batch_3 \(image 5\): pixel values [0-9]+\.\.300 outside 0-255"):
        load("image", data)
    png = write_pathfinder(tmp_path / "pf", count=10)
    line = (png / "metadata" / "0.npy").read_text().splitlines()[2].split()
    deep = np.full((32, 32), 1000, dtype=np.uint16)
    Image.fromarray(deep).save(png / line[0] / line[1])
    with pytest.raises(DataError, match=r"0\.npy:3: .*sample_2\.png has pixel values 1000\.\.1000 outside 0-255"):
        load("pathfinder", png)


def test_image_of_the_wrong_size(tmp_path):
    png = write_pathfinder(tmp_path / "pf", count=10)
    line = (png / "metadata" / "0.npy").read_text().splitlines()[4].split()
    Image.new("L", (32, 31)).save(png / line[0] / line[1])
    with pytest.raises(DataError, match=r"0\.npy:5: .*sample_4\.png is 31x32, not a square grayscale image"):
        load("pathfinder", png)
    Image.new("L", (16, 16)).save(png / line[0] / line[1])
    with pytest.raises(DataError, match=r"0\.npy:5: .*sample_4\.png is 16x16, the images before it 32x32"):
        load("pathfinder", png)
    data = write_cifar10(tmp_path / "cifar")
    with open(data / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch[b"data"] = batch[b"data"][:, :3000]
    with open(data / "test_batch", "wb") as f:
        pickle.dump(batch, f)
    with pytest.raises(DataError, match=r"test_batch \(image 0\): 3000 values, expected 3072"):
        load("image", data, "test")


def test_missing_image_and_empty_review(tmp_path):
    png = write_pathfinder(tmp_path / "pf", count=10)
    line = (png / "metadata" / "0.npy").read_text().splitlines()[0].split()
    (png / line[0] / line[1]).unlink()
    with pytest.raises(DataError, match=r"0\.npy:1: the image .*sample_0\.png does not exist"):
        load("pathfinder", png)
    data = write_imdb(tmp_path / "aclImdb")
    empty = sorted((data / "train" / "pos").glob("*.txt"))[3]
    empty.write_text("")
    with pytest.raises(DataError, match=f"^{empty}: empty input"):
        load("text", data)


def test_unknown_layout_and_mismatched_input_type(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no known data layout found"):
        detect_format(tmp_path / "empty")
    data = write_cifar10(tmp_path / "cifar")
    cfg = cfg_for("listops", data=str(data), data_format="auto")
    with pytest.raises(ValueError, match="--input-type tokens but .* holds pixels"):
        SequenceClassificationTask.setup_task(cfg)


def test_bad_binarised_label(tmp_path):
    raw = write_listops(tmp_path / "raw")
    out = tmp_path / "bin"
    lra.binarise("listops", raw, out)
    labels = (out / "label" / "valid.label").read_text().splitlines()
    labels[2] = "11"
    (out / "label" / "valid.label").write_text("\n".join(labels) + "\n")
    cfg = cfg_for("listops", data=str(out), data_format="auto")
    task = SequenceClassificationTask.setup_task(cfg)
    with pytest.raises(DataError, match=f"{out / 'label' / 'valid.label'}:3: the label 11 is outside the 10 classes"):
        task.load_dataset("valid")
