"""data/samples: demo/data_samples.py writes the committed files again, the readers of the
recipes read every sample, data/README.md describes each, and git keeps them (not the demos)."""

import io
import json
import platform
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from demo import data_samples as samples
from helpers import ROOT
from helpers.fairseq_jobs import preprocess
from mega_fairseq.data import mt as mt_data
from mega_fairseq.data.classification import LRA_TASKS, SPEECH_COMMANDS, SPLITS, _ArraysOnly
from mega_fairseq.tasks.mega_sequence_classification import SequenceClassificationTask

SAMPLES = ROOT / "data" / "samples"
MADE_WITH = json.loads((SAMPLES / samples.MADE_WITH).read_text())
# samples whose bytes follow a tool of the machine: the tool's version now, and the version in made_with.json
TOOL_VERSIONS = {"lm": ("python", platform.python_version()),
                 "speech_commands": ("espeak-ng", samples.espeak_version())}


def files(folder: Path):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def same_content(a: Path, b: Path) -> bool:
    """Equal bytes; or, where the encoder's version may change the bytes, equal pixels (PNG) or equal arrays
    and values (the pickles of CIFAR-10)."""
    if a.read_bytes() == b.read_bytes():
        return True
    if a.suffix == ".png":
        return np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    if a.parent.name == "cifar-10-batches-py":
        first, second = (_ArraysOnly(io.BytesIO(p.read_bytes()), encoding="bytes").load() for p in (a, b))
        return first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)
    return False


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("samples")
    names = [name for name in samples.SAMPLES if name != "speech_commands" or shutil.which("espeak-ng")]
    samples.main(["--out", str(out), *names])
    return out


@pytest.mark.parametrize("name", list(samples.SAMPLES))
def test_regenerating_gives_the_committed_files(name, regenerated):
    if not (regenerated / name).exists():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    committed, new = SAMPLES / name, regenerated / name
    tool, version = TOOL_VERSIONS.get(name, (None, None))
    if tool is not None and MADE_WITH.get(tool) != version:
        check_layout(name, committed, new)  # another version of the tool: the same layout, other bytes
        return
    assert files(committed) == files(new)
    different = [path for path in files(committed) if not same_content(committed / path, new / path)]
    assert not different, f"rerun python -m demo.data_samples {name}: these differ: {different}"


def check_layout(name: str, committed: Path, new: Path):
    if name == "lm":
        assert files(committed) == files(new) == ["test.txt", "train.txt", "valid.txt"]
        for path in files(new):
            lines = (new / path).read_text(encoding="utf-8").splitlines()
            assert len(lines) == samples.LM_LINES and all(line.strip() for line in lines)
        return
    for folder in (committed, new):  # speech_commands: speaker ids follow espeak-ng's voices
        wavs = files(folder)
        for word in samples.SPEECH_WORDS.split(","):
            assert sum(path.startswith(f"{word}/") and path.endswith(".wav") for path in wavs) == \
                samples.SPEECH_PER_WORD
        for listed in ("validation_list.txt", "testing_list.txt"):
            assert all((folder / line).is_file() for line in (folder / listed).read_text().splitlines())
        for path in wavs:
            if path.endswith(".wav"):
                info = sf.info(str(folder / path))
                assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")


def test_the_samples_are_small():
    total = sum((SAMPLES / path).stat().st_size for path in files(SAMPLES))
    assert total < 1_000_000, f"data/samples holds {total:,} bytes"
    assert sorted(p.name for p in SAMPLES.iterdir() if p.is_dir()) == sorted(samples.SAMPLES)


# sample folder -> task settings (the recipe's), examples per split
CLASSIFICATION = {
    "listops": (LRA_TASKS["listops"], {}, (6, 3, 3)),
    "aclImdb": (LRA_TASKS["text"], {}, (4, 4, 4)),  # valid is the test split, as in LRA
    "aan": (LRA_TASKS["retrieval"], {}, (4, 2, 2)),
    "cifar-10-batches-py": (LRA_TASKS["image"], {}, (9, 1, 2)),  # valid: the last 10% of the training images
    "pathfinder32/curv_contour_length_14": (LRA_TASKS["pathfinder"], {}, (8, 1, 1)),
    # one validation clip is 15,980 samples: dropped, as the SC10 protocol drops short clips
    "speech_commands": (SPEECH_COMMANDS, {"num_classes": 2, "words": "yes,no"}, (2, 1, 2)),
}


@pytest.mark.parametrize("folder", list(CLASSIFICATION))
def test_the_classification_task_reads_each_sample(folder):
    spec, changes, counts = CLASSIFICATION[folder]
    cfg = SimpleNamespace(**{**spec._asdict(), "data": str(SAMPLES / folder), "data_format": "auto", "seed": 1,
                             "words": "sc10", "split_protocol": "lists", "short_clips": "drop", "resample": False,
                             **changes})
    task = SequenceClassificationTask.setup_task(cfg)
    assert task.format.name == spec.data_format
    for split, count in zip(SPLITS, counts):
        dataset = task.load_dataset(split)
        batch = dataset.collater([dataset[i] for i in range(len(dataset))])
        assert len(dataset) == count and batch["target"].max() < cfg.num_classes
        assert batch["net_input"]["src_tokens"].float().isfinite().all()


def binarise_text(folder: Path, dest: Path):
    """fairseq-preprocess --only-source, as scripts/common.sh's binarise_lm runs it; returns the dataset
    of each split."""
    from fairseq.data import Dictionary, data_utils

    preprocess("--only-source", "--trainpref", folder / "train.txt", "--validpref", folder / "valid.txt",
               "--testpref", folder / "test.txt", "--destdir", dest, "--workers", "1")
    dictionary = Dictionary.load(str(dest / "dict.txt"))
    return {split: data_utils.load_indexed_dataset(str(dest / split), dictionary) for split in SPLITS}


@pytest.mark.parametrize("folder", ["lm", "enwik8/text"])
def test_fairseq_preprocess_reads_the_language_modelling_samples(folder, tmp_path):
    datasets = binarise_text(SAMPLES / folder, tmp_path)
    for split, dataset in datasets.items():
        lines = (SAMPLES / folder / f"{split}.txt").read_text(encoding="utf-8").splitlines()
        assert list(dataset.sizes) == [len(line.split()) + 1 for line in lines]  # the tokens and </s>
    if folder == "enwik8/text":  # one token per byte of the dump, a line end for each newline
        tokens = [int(token) for split in SPLITS for token in (SAMPLES / folder / f"{split}.txt").read_text().split()]
        assert bytes(tokens) == (SAMPLES / "enwik8" / "enwik8").read_bytes().replace(b"\n", b"")


def test_the_translation_sample_passes_the_prepare_scripts_check(capsys):
    mt_data.cmd_check(SimpleNamespace(raw_dir=str(SAMPLES / "mt"), splits=list(SPLITS), src="en", tgt="de"))
    assert "train: 5 sentence pairs" in capsys.readouterr().err


def test_the_readme_describes_every_sample():
    readme = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    for name in [*samples.SAMPLES, *CLASSIFICATION, "enwik8/text", samples.MADE_WITH]:
        assert f"data/samples/{name}" in readme, f"data/README.md does not mention data/samples/{name}"


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize("path, ignored", [
    ("data/demo/bin/dict.txt", True), ("data/demo_mt/raw/train.en", True), ("data/demo_lra/listops/meta.json", True),
    ("data/demo_speech/raw/yes/a_nohash_0.wav", True), ("data/wikitext-103/bin/train.bin", True),
    ("data/wmt16_en_de.raw/train.en", True), ("data/README.md", False),
    ("data/samples/listops/basic_train.tsv", False), ("data/samples/speech_commands/yes/a_nohash_0.wav", False),
    ("demo/data_samples.py", False)])
def test_git_ignores_the_demos_outputs_not_the_samples(path, ignored):
    result = subprocess.run(["git", "check-ignore", "--quiet", "--no-index", path], cwd=ROOT)
    assert result.returncode == (0 if ignored else 1)
