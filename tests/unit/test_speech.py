"""Raw speech classification (Speech Commands): the clip rules on real WAV files, errors for bad
audio before training, the prepared cache, the presets and recipes. Training and evaluation through
the real CLIs and scripts: tests/cli/test_speech_cli.py."""

import numpy as np
import pytest
import soundfile
from omegaconf import OmegaConf

from helpers import ROOT
from helpers.tiny import speech_cfg, tone, write_speech_commands, write_wav
from mega_fairseq.data import speech_commands
from mega_fairseq.data.classification import (ALL_WORDS, SC10_WORDS, DataError, detect_format, read_clip,
                                              speech_commands_split)
from mega_fairseq.data.examples import load_split, waveform_statistics
from mega_fairseq.models.mega_classifier import CLASSIFIER_PRESETS
from mega_fairseq.tasks.mega_sequence_classification import SequenceClassificationTask

WORDS3 = "yes,no,up"


# ---------------------------------------------------------------- the clip rules


def test_exact_clip_is_read_as_value_over_32768(tmp_path):
    values = np.array([0, 1, -1, 32767, -32768] + [5] * 15995, dtype=np.int16)
    path = tmp_path / "a.wav"
    soundfile.write(path, values, 16000, subtype="PCM_16")
    audio = read_clip(path, speech_cfg())
    assert audio.dtype == np.float32 and audio.shape == (16000,)
    np.testing.assert_array_equal(audio, values.astype(np.float32) / 32768)


def test_short_clips_are_dropped_or_padded_with_zeros(tmp_path):
    clip = write_wav(tmp_path / "short.wav", tone(0, length=12000))
    assert read_clip(clip, speech_cfg(short_clips="drop")) is None
    padded = read_clip(clip, speech_cfg(short_clips="pad"))
    assert padded.shape == (16000,) and not padded[12000:].any()
    np.testing.assert_allclose(padded[:12000], soundfile.read(clip, dtype="float32")[0])


def test_a_long_clip_is_an_error_naming_the_flag_unless_truncated(tmp_path):
    clip = write_wav(tmp_path / "long.wav", tone(1, length=20000))
    with pytest.raises(DataError, match=f"^{clip}: a clip of 20000 samples is longer than --max-positions 16000 "
                                        f".*--shorten-method truncate to keep the first 16000 samples"):
        read_clip(clip, speech_cfg())
    np.testing.assert_allclose(read_clip(clip, speech_cfg(shorten_method="truncate")),
                               soundfile.read(clip, dtype="float32")[0][:16000])


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = tone(0), tone(3, seed=1)
    clip = write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1))
    both = soundfile.read(clip, dtype="float32")[0]
    np.testing.assert_allclose(read_clip(clip, speech_cfg()), both.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize("subtype,tolerance", [("PCM_U8", 1 / 64), ("PCM_16", 1e-4), ("PCM_24", 1e-6),
                                               ("PCM_32", 1e-6), ("FLOAT", 0.0)])
def test_bit_depths_and_float_wavs(tmp_path, subtype, tolerance):
    signal = tone(2)
    path = tmp_path / f"{subtype}.wav"
    if subtype == "PCM_U8":  # 8-bit WAV is unsigned PCM
        soundfile.write(path, signal, 16000, subtype="PCM_U8", format="WAV")
    else:
        write_wav(path, signal, subtype=subtype)
    assert soundfile.info(str(path)).subtype == subtype
    np.testing.assert_allclose(read_clip(path, speech_cfg()), signal, atol=tolerance + 1e-7)


def test_other_sample_rates_need_resample(tmp_path):
    clip = write_wav(tmp_path / "8k.wav", tone(0, length=8000, rate=8000), rate=8000)
    with pytest.raises(DataError, match=f"^{clip}: sample rate 8000 Hz, expected 16000 \\(pass --resample"):
        read_clip(clip, speech_cfg())
    from scipy.signal import resample_poly

    resampled = read_clip(clip, speech_cfg(resample=True))
    expected = resample_poly(soundfile.read(clip, dtype="float32")[0], 2, 1)
    assert resampled.shape == (16000,)
    np.testing.assert_allclose(resampled, expected, atol=1e-6)


def test_corrupt_and_empty_wavs_are_named(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(DataError, match=f"^{corrupt}: not a readable audio file"):
        read_clip(corrupt, speech_cfg())
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(DataError, match=f"^{empty}: empty audio"):
        read_clip(empty, speech_cfg())


# ---------------------------------------------------------------- the release layout


def test_release_lists_and_labels(tmp_path):
    data = write_speech_commands(tmp_path / "sc")
    write_wav(data / "no" / "v0000000_nohash_0.wav", tone(1, length=15000))  # a short validation clip
    assert detect_format(data).name == "speech_commands"
    split = speech_commands_split(data, speech_cfg())
    splits = split.clips
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [40, 9, 10]
    assert split.short == {"train": 0, "valid": 1, "test": 0} and split.dropped_before_split == 0
    assert split.describe("valid", speech_cfg()) == "valid: 9 clips; short clips (under 16000 samples) dropped: 1"
    padded = speech_commands_split(data, speech_cfg(short_clips="pad"))
    assert padded.describe("valid", speech_cfg(short_clips="pad")) == \
        "valid: 10 clips; short clips (under 16000 samples) padded with zeros: 1"
    assert {path.parent.name for path, _ in splits["valid"]} == set(SC10_WORDS) - {"no"}
    assert all(SC10_WORDS[label] == path.parent.name for path, label in splits["train"])
    (inputs,), labels = load_split(speech_cfg(), detect_format(data), data, "test", None)
    assert len(inputs) == 10 and all(x.shape == (16000,) for x in inputs) and sorted(labels) == list(range(10))


def test_the_35_words_and_the_official_label_order(tmp_path):
    data = write_speech_commands(tmp_path / "sc", words=ALL_WORDS, per_word=3)
    splits = speech_commands_split(data, speech_cfg(words="all", num_classes=35)).clips
    assert ALL_WORDS[:3] == ("bed", "cat", "down") and len(ALL_WORDS) == 35
    assert {label for _, label in splits["train"]} == set(range(35))


def test_random_split_protocol_is_stratified_and_deterministic(tmp_path):
    data = write_speech_commands(tmp_path / "sc", per_word=20)
    short = data / "yes" / "s0000003_nohash_0.wav"
    write_wav(short, tone(0, length=9000))
    split = speech_commands_split(data, speech_cfg(split_protocol="random"))
    first = split.clips
    assert first == speech_commands_split(data, speech_cfg(split_protocol="random")).clips
    sizes = [len(first[s]) for s in ("train", "valid", "test")]
    assert sum(sizes) == 199 and sizes[0] == 139  # the short clip is dropped before splitting; 70%
    assert split.dropped_before_split == 1 and split.describe("test", speech_cfg(split_protocol="random")) == \
        f"test: {sizes[2]} clips; short clips (under 16000 samples) dropped before the random split: 1"
    everything = [p for s in first.values() for p, _ in s]
    assert len(set(everything)) == 199 and short not in everything
    for clips in first.values():  # stratified: every word in every split
        assert {label for _, label in clips} == set(range(10))
    few = write_speech_commands(tmp_path / "few", per_word=3)
    with pytest.raises(DataError, match=f"^{few}: 30 clips of 10 words are too few for the stratified random "
                                        f"70/15/15 split .*--split-protocol lists"):
        speech_commands_split(few, speech_cfg(split_protocol="random"))


def test_missing_word_folder_and_listed_file_are_named(tmp_path):
    data = write_speech_commands(tmp_path / "sc", words=("yes", "no"), per_word=3)
    with pytest.raises(DataError, match=f"{data / 'up'}: no such word folder"):
        speech_commands_split(data, speech_cfg(words="yes,no,up", num_classes=3))
    with open(data / "testing_list.txt", "a") as f:
        f.write("no/gone_nohash_0.wav\n")
    with pytest.raises(DataError, match=f"{data / 'testing_list.txt'}:3: no/gone_nohash_0.wav does not exist"):
        speech_commands_split(data, speech_cfg(words="yes,no", num_classes=2))


def test_words_must_match_the_classes(tmp_path):
    data = write_speech_commands(tmp_path / "sc", words=WORDS3.split(","), per_word=3)
    with pytest.raises(ValueError, match="--words yes,no,up has 3 words but --num-classes is 10"):
        SequenceClassificationTask.setup_task(speech_cfg(data=str(data), words=WORDS3))


def test_prepared_cache_equals_the_release_files(tmp_path):
    data = write_speech_commands(tmp_path / "sc")
    write_wav(data / "no" / "s0000004_nohash_0.wav", tone(1, length=15000))  # a short training clip, dropped
    out = tmp_path / "cache"
    meta = speech_commands.cache(data, out, speech_cfg())
    raw = SequenceClassificationTask.setup_task(speech_cfg(data=str(data)))
    cached = SequenceClassificationTask.setup_task(speech_cfg(data=str(out)))
    train_clips = load_split(speech_cfg(), detect_format(data), data, "train", None)[0][0]
    assert len(train_clips) == 39 and meta["examples"] == {"train": 39, "valid": 10, "test": 10}
    mean, std = waveform_statistics(train_clips)
    assert (meta["mean"], meta["std"]) == pytest.approx((mean, std), rel=1e-9)
    assert raw.standardization == pytest.approx(cached.standardization, rel=1e-9)
    assert cached.standardization == pytest.approx((1.0, mean, std + 1e-5))
    for split in ("train", "test"):
        raw.load_dataset(split)
        cached.load_dataset(split)
        a, b = raw.dataset(split), cached.dataset(split)
        assert len(a) == len(b)
        for i in range(len(a)):
            np.testing.assert_array_equal(a[i]["net_input.src_tokens"].numpy(), b[i]["net_input.src_tokens"].numpy())
            assert a[i]["target"] == b[i]["target"]


def test_batches_hold_whole_clips_without_padding(tmp_path):
    """Batch norm sees no padding: every clip is exactly --max-positions samples long, short ones
    included (--short-clips pad), so a batch has no padded position."""
    data = write_speech_commands(tmp_path / "sc")
    write_wav(data / "yes" / "s0000004_nohash_0.wav", tone(0, length=11000))
    task = SequenceClassificationTask.setup_task(speech_cfg(data=str(data), short_clips="pad"))
    task.load_dataset("train")
    dataset = task.dataset("train")
    batch = dataset.collater([dataset[i] for i in range(len(dataset))])
    assert batch["net_input"]["src_tokens"].shape == (40, 16000)
    assert batch["net_input"]["src_lengths"].eq(16000).all()


# ---------------------------------------------------------------- presets and recipes


def test_presets_hold_the_paper_settings():
    base = CLASSIFIER_PRESETS.resolve("mega_sc_raw_base")
    assert (base["encoder_layers"], base["encoder_embed_dim"], base["encoder_hidden_dim"], base["encoder_z_dim"],
            base["encoder_n_dim"], base["encoder_chunk_size"], base["truncation_length"],
            base["attention_activation_fn"], base["normalization_type"], base["normalize_before"], base["pooling"],
            base["classifier_hidden_dim"], base["dropout"]) == \
        (6, 60, 120, 30, 16, 1000, 1000, "laplace", "batchnorm", True, "mean", 120, 0.0)
    big = CLASSIFIER_PRESETS.resolve("mega_sc_raw_big")
    assert (big["encoder_embed_dim"], big["encoder_hidden_dim"], big["encoder_z_dim"], big["classifier_hidden_dim"]) \
        == (72, 144, 36, 144)
    assert CLASSIFIER_PRESETS.resolve("mega_sc_raw") == base
    tiny = CLASSIFIER_PRESETS.resolve("mega_sc_raw_tiny")
    assert tiny["encoder_embed_dim"] == 16 and tiny["normalization_type"] == "batchnorm"


def test_recipes_have_the_official_settings():
    base = OmegaConf.load(ROOT / "configs" / "speech" / "sc_raw.yaml")
    big = OmegaConf.load(ROOT / "configs" / "speech" / "sc_raw_big.yaml")
    assert base.optimization.lr == [1e-2] and big.optimization.lr == [8e-3]
    assert base.model._name == "mega_sc_raw_base" and big.model._name == "mega_sc_raw_big"
    for recipe in (base, big):
        assert (recipe.dataset.batch_size, recipe.optimization.max_update, recipe.lr_scheduler.warmup_updates,
                recipe.optimizer.weight_decay, recipe.optimization.clip_norm) == (20, 250000, 10000, 0.01, 1.0)
        assert (recipe.task.input_type, recipe.task.num_classes, recipe.task.max_positions) == ("waveform", 10, 16000)
        assert recipe.task.split_protocol == "random"  # the paper's SC10 protocol, not the release's lists
    # the big recipe is the base one but the model and the learning rate
    different = {key for key in ("model", "optimization") if OmegaConf.to_container(base[key]) !=
                 OmegaConf.to_container(big[key])}
    assert different == {"model", "optimization"}
    for key in ("common", "task", "criterion", "optimizer", "lr_scheduler", "dataset", "checkpoint"):
        assert OmegaConf.to_container(base[key]) == OmegaConf.to_container(big[key])
