"""Raw speech classification (Speech Commands) through the real CLIs and scripts on a fixture in the
release layout: fairseq-train on the release files and its stops on bad input, prepare_sc.sh ->
train.sh -> eval_cls.sh, and prepare_sc.sh's download and refusals."""

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import soundfile

from helpers import SCRIPTS, USER_DIR
from helpers.fairseq_jobs import run, run_jobs
from helpers.tiny import speech_cfg, tone, write_speech_commands, write_wav
from mega_fairseq.data import speech_commands
from mega_fairseq.data.classification import SC10_WORDS

CLI_TINY = ["--arch", "mega_sc_raw_tiny", "--encoder-chunk-size", "100", "--criterion", "sentence_prediction",
            "--optimizer", "adam", "--lr", "1e-2", "--batch-size", "4", "--max-update", "2", "--no-progress-bar",
            "--log-format", "simple", "--log-interval", "1", "--required-batch-size-multiple", "1", "--num-workers",
            "0", "--cpu", "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric",
            "--no-epoch-checkpoints"]


def test_train_on_the_release_files_and_stop_on_bad_input_with_the_cli(tmp_path):
    """fairseq-train on the release folder (the default random split, 2 updates, validation), which
    logs the short clips it dropped; then, each stopping before training: a corrupt WAV, and
    waveforms without --max-positions, read from the release folder or from the prepared cache
    (no clip is cut to the default 1024 samples). All in one process (the job driver)."""
    good = write_speech_commands(tmp_path / "good", per_word=7)
    write_wav(good / "up" / "s0000003_nohash_0.wav", tone(2, length=15000))  # short: dropped before the split
    bad_data = write_speech_commands(tmp_path / "bad", per_word=4)
    bad = bad_data / "go" / "s0000002_nohash_0.wav"
    bad.write_bytes(b"not audio at all")
    cache = tmp_path / "cache"
    speech_commands.cache(good, cache, speech_cfg(split_protocol="random"))

    def train(data, save, positions=("--max-positions", "16000")):
        return ["train", [str(data), "--user-dir", USER_DIR, "--task", "mega_sequence_classification",
                          "--input-type", "waveform", "--num-classes", "10", *positions, *CLI_TINY,
                          "--save-dir", str(save)]]

    jobs = [train(good, tmp_path / "save"), ["expect_error", *train(bad_data, tmp_path / "bad_save")],
            ["expect_error", *train(good, tmp_path / "default_save", positions=())],
            ["expect_error", *train(cache, tmp_path / "cache_save", positions=())]]
    done = run_jobs(jobs, tmp_path / "jobs")
    first, _, errors = done.stdout.partition("JOB OK 0")
    assert "num_updates 2" in first and re.search(r"valid on 'valid' subset .*? accuracy [0-9.]+", first), \
        done.stdout[-3000:]
    assert "training samples: mean" in first
    for split, count in (("train", 48), ("valid", 10)):  # of 69 clips, 70/15/15
        assert f"{split}: {count} clips; short clips (under 16000 samples) dropped before the random split: 1" \
            in first, first[-3000:]
    assert f"JOB ERROR 1: DataError: {bad}: not a readable audio file" in errors, errors[-3000:]
    assert re.search(r"JOB ERROR 2: DataError: \S+\.wav: a clip of 16000 samples is longer than --max-positions "
                     r"1024 \(set --max-positions to the clip length", errors), errors[-3000:]
    assert f"JOB ERROR 3: DataError: {cache / 'input0' / 'valid.npy'} (example 0): an input of 16000 items is " \
           f"longer than --max-positions 1024" in errors, errors[-3000:]
    assert "begin training" not in errors and not list(tmp_path.glob("*_save/checkpoint_last.pt"))


def official_sc10_split(release: Path):
    """The official code's SC10 data (its _process_data and split_data, as S4's), written here on
    its own: the ten words' clips of exactly 16000 samples, file names sorted (the official code
    takes os.listdir's order), split 70/30 stratified with seed 0, then the 30 halved into
    validation and test with seed 1. Returns {split: (clips N x 16000, labels)}."""
    from sklearn.model_selection import train_test_split

    clips, labels = [], []
    for label, word in enumerate(SC10_WORDS):
        for name in sorted(os.listdir(release / word)):
            audio = soundfile.read(release / word / name, dtype="float32")[0]
            if len(audio) == 16000:
                clips.append(audio)
                labels.append(label)

    def split_data(tensor, stratify):
        train, rest, _, rest_stratify = train_test_split(tensor, stratify, train_size=0.7, random_state=0,
                                                         shuffle=True, stratify=stratify)
        valid, test = train_test_split(rest, train_size=0.5, random_state=1, shuffle=True, stratify=rest_stratify)
        return train, valid, test

    labels = np.array(labels)
    return {split: (x, y) for split, x, y in zip(("train", "valid", "test"), split_data(np.stack(clips), labels),
                                                  split_data(labels, labels))}


def test_prepare_train_and_evaluate_with_the_scripts(tmp_path):
    """prepare_sc.sh (downloading the release archive: a file:// address here, with its SHA-256)
    makes the official code's random split by default -> train.sh speech/sc_raw -> eval_cls.sh,
    which prints the test accuracy last."""
    release = write_speech_commands(tmp_path / "release", per_word=7)
    write_wav(release / "no" / "s0000004_nohash_0.wav", tone(1, length=15000))  # short: dropped before splitting
    archive = tmp_path / "speech_commands_v0.02.tar.gz"
    run(["tar", "-czf", archive, "-C", release, "."])
    raw = tmp_path / "raw"  # empty: prepare_sc.sh downloads and extracts the archive into it
    data = tmp_path / "sc10"
    output = run(["bash", SCRIPTS / "prepare_sc.sh", raw, data],
                 env={"SPEECH_COMMANDS_URL": f"file://{archive}",
                      "SPEECH_COMMANDS_SHA256": hashlib.sha256(archive.read_bytes()).hexdigest()})[1]
    assert "downloading file://" in output and "checking the SHA-256" in output
    assert (raw / "validation_list.txt").is_file() and not list(tmp_path.glob(".sc10.tmp.*"))
    assert "train: 48 clips; short clips (under 16000 samples) dropped before the random split: 1" in output
    meta = json.loads((data / "meta.json").read_text())
    assert meta["words"] == list(SC10_WORDS) and meta["input_type"] == "waveform"
    assert meta["split_protocol"] == "random" and meta["examples"] == {"train": 48, "valid": 10, "test": 11}
    for split, (clips, labels) in official_sc10_split(release).items():
        np.testing.assert_array_equal(np.load(data / "input0" / f"{split}.npy"), clips)
        assert (data / "label" / f"{split}.label").read_text().split() == [str(label) for label in labels]
    save = tmp_path / "run"
    run(["bash", SCRIPTS / "train.sh", "speech/sc_raw", data, save, "++model.encoder_layers=1",
         "++model.encoder_embed_dim=16", "++model.encoder_hidden_dim=32", "++model.encoder_z_dim=8",
         "++model.encoder_n_dim=2", "++model.encoder_chunk_size=100", "++model.classifier_hidden_dim=16",
         "optimization.max_update=2", "dataset.batch_size=4", "lr_scheduler.warmup_updates=1"], env={"CPU": "1"})
    output = run(["bash", SCRIPTS / "eval_cls.sh", save / "checkpoints" / "checkpoint_best.pt", data],
                 env={"CPU": "1"})[1]
    assert re.fullmatch(r"test accuracy: [0-9.]+", output.strip().splitlines()[-1]), output[-2000:]


def test_prepare_downloads_over_https_and_extracts_only_the_release_archive(tmp_path):
    """A stand-in curl serves an archive that is not the release: prepare_sc.sh asks for an https
    address and stops at the SHA-256 check, before extracting or decoding anything."""
    release = write_speech_commands(tmp_path / "release", words=("yes", "no"), per_word=2)
    archive = tmp_path / "other.tar.gz"
    run(["tar", "-czf", archive, "-C", release, "."])
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "curl").write_text(f"""#!/usr/bin/env bash
while [[ $# -gt 0 ]]; do case "$1" in -o) out="$2"; shift ;; -*) ;; *) url="$1" ;; esac; shift; done
echo "$url" > {tmp_path / "url"}
cp {archive} "$out"
""")
    (shims / "curl").chmod(0o755)
    raw = tmp_path / "raw"
    code, output = run(["bash", SCRIPTS / "prepare_sc.sh", raw, tmp_path / "sc10"], check=False,
                       env={"PATH": f"{shims}:{os.environ['PATH']}"})
    url = (tmp_path / "url").read_text().strip()
    assert url.startswith("https://") and url.endswith("/speech_commands_v0.02.tar.gz"), url
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert code != 0 and f"has SHA-256 {digest}, expected " \
        "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58" in output, output
    assert sorted(path.name for path in raw.iterdir()) == ["speech_commands_v0.02.tar.gz"]  # not extracted
    assert not (tmp_path / "sc10").exists()


def test_prepare_refuses_existing_output_and_names_bad_files(tmp_path):
    raw = write_speech_commands(tmp_path / "raw", per_word=3)
    (tmp_path / "out").mkdir()
    code, output = run(["bash", SCRIPTS / "prepare_sc.sh", raw, tmp_path / "out"], check=False)
    assert code != 0 and "already exists" in output
    write_wav(raw / "up" / "s0000002_nohash_0.wav", tone(2, length=8000, rate=8000), rate=8000)
    code, output = run(["bash", SCRIPTS / "prepare_sc.sh", raw, tmp_path / "new", "--split-protocol", "lists"],
                       check=False)
    assert code != 0 and "s0000002_nohash_0.wav: sample rate 8000 Hz" in output
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".new.tmp.*"))
