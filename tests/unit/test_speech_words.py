"""Tests of demo/speech_words.py: the Speech Commands layout, speaker-disjoint splits,
determinism by seed, the audio itself, and the refusals (without espeak-ng:
tests/cli/test_speech_words_cli.py)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from demo import speech_words

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")
WORDS = "yes,no,stop"
PER_WORD = 20


def wav_files(root: Path):
    return sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.wav"))


def read_list(root: Path, name: str):
    return (root / name).read_text(encoding="utf-8").splitlines()


def window_rms(audio: np.ndarray, size: int) -> np.ndarray:
    windows = audio[:len(audio) // size * size].reshape(-1, size)
    return np.sqrt((windows.astype(np.float64) ** 2).mean(axis=1))


def speaker_of(relpath: str) -> str:
    return relpath.split("/")[1].split("_nohash_")[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("sc") / "speech_commands"
    speech_words.main([str(root), "--words", WORDS, "--per-word", str(PER_WORD), "--valid-fraction", "0.2",
              "--test-fraction", "0.2", "--seed", "3"])
    return root


@needs_espeak
def test_layout_and_format(corpus):
    words = WORDS.split(",")
    assert sorted(p.name for p in corpus.iterdir() if p.is_dir()) == sorted(words)
    assert {p.name for p in corpus.iterdir() if p.is_file()} == {"validation_list.txt", "testing_list.txt"}
    assert not list(corpus.parent.glob(".speech_commands*")), "temporary folder left behind"
    files = wav_files(corpus)
    assert len(files) == len(words) * PER_WORD
    for rel in files:
        word, name = rel.split("/")
        stem, take = name[:-len(".wav")].split("_nohash_")
        assert len(stem) == 8 and int(stem, 16) >= 0 and take.isdigit(), rel
        info = sf.info(str(corpus / rel))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        assert 12000 <= info.frames <= 16000


@needs_espeak
def test_lists_and_speaker_disjoint_splits(corpus):
    files = set(wav_files(corpus))
    valid = read_list(corpus, "validation_list.txt")
    test = read_list(corpus, "testing_list.txt")
    assert valid and test
    assert set(valid) <= files and set(test) <= files
    assert not set(valid) & set(test)
    train = files - set(valid) - set(test)
    groups = [{speaker_of(p) for p in split} for split in (train, valid, test)]
    assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]
    total = len(files)
    assert abs(len(valid) / total - 0.2) <= 0.06 and abs(len(test) / total - 0.2) <= 0.06
    # each split has every word equally often, since every speaker says every word
    for split in (valid, test):
        counts = {w: sum(p.startswith(w + "/") for p in split) for w in WORDS.split(",")}
        assert len(set(counts.values())) == 1, counts


@needs_espeak
def test_short_clips_exist(corpus):
    lengths = [sf.info(str(corpus / rel)).frames for rel in wav_files(corpus)]
    short = [n for n in lengths if n < 16000]
    assert short and all(12000 <= n < 16000 for n in short)
    assert sum(n == 16000 for n in lengths) > len(lengths) / 2


@needs_espeak
def test_clips_hold_speech_above_noise(corpus):
    noise = 0.01
    for rel in wav_files(corpus):
        audio, _ = sf.read(str(corpus / rel), dtype="float32")
        assert np.abs(audio).max() <= 1.0
        loudest = window_rms(audio, 1600).max()  # 100 ms windows
        quietest = window_rms(audio, 400).min()  # 25 ms windows
        assert loudest > 3 * noise, f"{rel}: loudest 100 ms has RMS {loudest:.4f}, near the noise floor"
        assert quietest < 2 * noise, f"{rel}: no quiet stretch around the word"


@needs_espeak
def test_synthesise_differs_by_word():
    yes = speech_words.synthesise("yes", "en-us", 160, 50)
    go = speech_words.synthesise("go", "en-us", 160, 50)
    for audio in (yes, go):
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert 1600 < len(audio) < 32000  # 0.1-2 s at 16 kHz
        assert np.sqrt(np.mean(audio ** 2)) > 0.01
    n = min(len(yes), len(go))
    assert len(yes) != len(go) or not np.allclose(yes, go)
    assert abs(np.corrcoef(yes[:n], go[:n])[0, 1]) < 0.5
    again = speech_words.synthesise("yes", "en-us", 160, 50)
    np.testing.assert_array_equal(yes, again)


@needs_espeak
def test_same_seed_same_bytes(tmp_path):
    args = ["--words", "up,down", "--per-word", "4", "--seed", "7"]
    speech_words.main([str(tmp_path / "a"), *args])
    speech_words.main([str(tmp_path / "b"), *args])
    speech_words.main([str(tmp_path / "c"), *args[:-1], "8"])
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 2 * 4 + 2
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert wav_files(tmp_path / "a") != wav_files(tmp_path / "c")


@needs_espeak
def test_refuses_existing_out_dir_unless_forced(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit) as exc:
        speech_words.main([str(out), "--words", "go", "--per-word", "2"])
    assert exc.value.code == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    speech_words.main([str(out), "--words", "go", "--per-word", "2", "--force"])
    assert not (out / "keep.txt").exists() and len(wav_files(out)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_bad_arguments_are_rejected(tmp_path, capsys):
    for bad in (["--per-word", "0"], ["--words", "yes,yes"], ["--words", "../x"],
                ["--valid-fraction", "0.6", "--test-fraction", "0.5"], ["--noise", "-1"]):
        with pytest.raises(SystemExit) as exc:
            speech_words.main([str(tmp_path / "out"), *bad])
        assert exc.value.code == 2, bad
    assert "error" in capsys.readouterr().err


def test_split_counts_respect_fractions():
    assert speech_words.split_counts(30, 0.1, 0.1) == {"valid": 3, "test": 3, "train": 24}
    assert speech_words.split_counts(4, 0.1, 0.1) == {"valid": 1, "test": 1, "train": 2}
    assert speech_words.split_counts(2, 0.1, 0.1) == {"valid": 1, "test": 0, "train": 1}
    assert speech_words.split_counts(1, 0.1, 0.1) == {"valid": 0, "test": 0, "train": 1}
    assert speech_words.split_counts(10, 0.0, 0.2) == {"valid": 0, "test": 2, "train": 8}
