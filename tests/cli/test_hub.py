"""The Python interfaces (``from_pretrained``, mega_fairseq/hub.py) on checkpoints trained here:
the language model's ``.score()`` against fairseq-eval-lm and the model's forward, seeded and
greedy ``.sample()``; ``.translate()`` with fairseq's sentencepiece hook against
fairseq-generate's detokenised hypotheses; the classifiers' ``.predict()`` on raw examples
(ListOps text, AAN text pairs, Pathfinder images, Speech Commands WAV files) against the model's
forward on the task's own batches and fairseq-validate's accuracy. Unsafe checkpoints are refused
by ``from_pretrained`` as on every loading path (tests/cli/test_safe_loading.py)."""

import random
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from fairseq.hub_utils import GeneratorHubInterface

from helpers import USER_DIR
from helpers.classifier import task_logits
from helpers.fairseq_jobs import Driver, preprocess
from helpers.tiny import tone, write_aan, write_listops, write_pathfinder, write_speech_commands
from mega_fairseq.data import speech_commands
from mega_fairseq.data.classification import DataError, read_pathfinder, speech_commands_split
from mega_fairseq.hub import ClassifierHubInterface, FromPretrained
from mega_fairseq.models.mega_classifier import MegaSequenceClassifier
from mega_fairseq.models.mega_lm import MegaLanguageModel
from mega_fairseq.models.mega_translation import MegaTranslationModel

LM_WORDS = [f"w{i}" for i in range(24)]
NUMBERS = {"one": "eins", "two": "zwei", "three": "drei", "four": "vier", "five": "fuenf", "six": "sechs",
           "seven": "sieben", "eight": "acht", "seventeen": "siebzehn", "eighteen": "achtzehn"}
CLIP = 2000  # samples per clip: the first eighth of a second of the fixture's clips keeps the tests fast
SPEECH_WORDS = ("yes", "no", "up")
COMMON = ["--user-dir", USER_DIR, "--num-workers", "0", "--no-progress-bar", "--log-format", "simple",
          "--required-batch-size-multiple", "1", "--cpu"]
TRAIN = ["--optimizer", "adam", "--no-epoch-checkpoints", "--disable-validation", "--seed", "1", "--log-interval", "50"]
MT_UPDATES = 150


def write_lm_corpus(folder: Path):
    """Sentences with a learnable order (each word tends to be followed by the next one)."""
    rng = random.Random(0)
    folder.mkdir(parents=True)
    for split, count in (("train", 240), ("valid", 10), ("test", 12)):
        lines = []
        for _ in range(count):
            start = rng.randrange(len(LM_WORDS))
            lines.append(" ".join(LM_WORDS[(start + k + (rng.random() < 0.2)) % len(LM_WORDS)]
                                  for k in range(rng.randint(3, 12))))
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    preprocess("--only-source", "--trainpref", folder / "train.txt", "--validpref", folder / "valid.txt",
               "--testpref", folder / "test.txt", "--destdir", folder / "bin", "--workers", "1")
    return folder


def write_mt_corpus(folder: Path):
    """English number words -> German ones, word by word (a piece per word): sentencepiece model,
    pieces, binarised."""
    import sentencepiece as spm

    rng = random.Random(0)
    folder.mkdir(parents=True)
    for split, count in (("train", 400), ("valid", 10), ("test", 12)):
        sources = [" ".join(rng.choices(list(NUMBERS), k=rng.randint(1, 4))) for _ in range(count)]
        (folder / f"{split}.raw.en").write_text("".join(f"{s}\n" for s in sources))
        (folder / f"{split}.raw.de").write_text("".join(" ".join(NUMBERS[w] for w in s.split()) + "\n"
                                                        for s in sources))
    spm.SentencePieceTrainer.train(input=f"{folder}/train.raw.en,{folder}/train.raw.de",
                                   model_prefix=str(folder / "spm"), vocab_size=48, hard_vocab_limit=False,
                                   character_coverage=1.0, minloglevel=2)
    model = spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    for split in ("train", "valid", "test"):
        for lang in ("en", "de"):
            lines = (folder / f"{split}.raw.{lang}").read_text().splitlines()
            (folder / f"{split}.{lang}").write_text("".join(" ".join(model.encode(line, out_type=str)) + "\n"
                                                            for line in lines))
    preprocess("--source-lang", "en", "--target-lang", "de", "--trainpref", folder / "train", "--validpref",
               folder / "valid", "--testpref", folder / "test", "--destdir", folder / "bin", "--joined-dictionary",
               "--workers", "1")
    return folder


def write_speech(folder: Path):
    """Clips of three words in the release layout, cached by prepare_sc.sh's script with short clips
    padded and long ones truncated (the task's own defaults drop and refuse them: the hub must
    follow meta.json)."""
    from types import SimpleNamespace

    raw = write_speech_commands(folder / "raw", words=SPEECH_WORDS, per_word=5)
    rules = SimpleNamespace(words=",".join(SPEECH_WORDS), split_protocol="lists", short_clips="pad",
                            shorten_method="truncate", resample=False, max_positions=CLIP)
    speech_commands.cache(raw, folder / "bin", rules)
    return raw, folder / "bin", rules


CLASSIFIERS = {  # name: (arch, task arguments)
    "listops": ("mega_classifier_tiny", ["--num-classes", "10", "--max-positions", "80"]),
    "retrieval": ("mega_classifier_tiny", ["--input-type", "bytes", "--paired", "--num-classes", "2",
                                          "--max-positions", "40", "--shorten-method", "truncate"]),
    "pathfinder": ("mega_classifier_tiny", ["--input-type", "pixels", "--num-classes", "2", "--max-positions",
                                           "1024", "--pixel-mean", "0.3", "--pixel-std", "0.2"]),
    "speech": ("mega_sc_raw_tiny", ["--input-type", "waveform", "--num-classes", "3", "--max-positions", str(CLIP)]),
}
# chunked attention: faster on CPU than the presets' full attention (pixels) and chunks of 1000 samples (speech)
ARCH_CHANGES = {"pathfinder": ["--encoder-chunk-size", "256"], "speech": ["--encoder-chunk-size", "200"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    speech_raw, speech_bin, speech_rules = write_speech(root / "speech")
    return {"root": root, "lm": write_lm_corpus(root / "lm"), "mt": write_mt_corpus(root / "mt"),
            "listops": write_listops(root / "listops", counts=(24, 4, 12), lengths=(10, 40)),
            "retrieval": write_aan(root / "aan", counts=(16, 4, 12)),
            "pathfinder": write_pathfinder(root / "pathfinder", count=40, size=32),
            "speech": speech_bin, "speech_raw": speech_raw, "speech_rules": speech_rules}


@pytest.fixture(scope="module")
def trained(data):
    """Trains every model and runs the fairseq evaluations (two job drivers);
    returns {job name: its output}."""
    root = data["root"]
    lm, mt = data["lm"], data["mt"]
    lm_args = [str(lm / "bin"), *COMMON, "--task", "mega_language_modeling", "--tokens-per-sample", "32"]
    mt_args = [str(mt / "bin"), *COMMON, "--task", "translation", "--source-lang", "en", "--target-lang", "de"]
    jobs = {
        "lm": ["train", lm_args + ["--arch", "mega_lm_tiny", *TRAIN, "--lr", "1e-2", "--batch-size", "8",
                                   "--max-update", "20", "--save-dir", str(root / "lm_ck")]],
        "eval_lm": ["eval_lm", lm_args + ["--path", str(root / "lm_ck" / "checkpoint_last.pt"), "--gen-subset", "test",
                                          "--sample-break-mode", "eos", "--output-word-probs", "--batch-size", "4"]],
        "mt": ["train", mt_args + ["--arch", "mega_mt_tiny", "--share-all-embeddings", "--normalize-before",
                                   "--dropout", "0", *TRAIN, "--lr", "1e-2", "--batch-size", "16", "--max-update",
                                   str(MT_UPDATES), "--save-dir", str(root / "mt_ck")]],
        "generate": ["generate", mt_args + ["--path", str(root / "mt_ck" / "checkpoint_last.pt"), "--gen-subset",
                                            "test", "--beam", "2", "--batch-size", "5", "--bpe", "sentencepiece",
                                            "--sentencepiece-model", str(mt / "spm.model")]],
    }
    for name, (arch, args) in CLASSIFIERS.items():
        task_args = [str(data[name]), *COMMON, "--task", "mega_sequence_classification", *args]
        save = root / f"{name}_ck"
        jobs[name] = ["train", task_args + ["--arch", arch, *ARCH_CHANGES.get(name, []), "--criterion",
                                            "sentence_prediction", *TRAIN, "--lr", "1e-3", "--batch-size", "4",
                                            "--max-update", "2", "--save-dir", str(save)]]
        jobs[f"validate_{name}"] = ["validate", task_args + ["--path", str(save / "checkpoint_last.pt"),
                                                             "--valid-subset", "test", "--batch-size", "5"]]
    # two processes of about equal length, one per core, one thread each
    first = ["mt", "generate", "lm", "eval_lm"]
    groups = [first, [name for name in jobs if name not in first]]
    drivers = [Driver([jobs[name] for name in names], root / f"jobs{number}", threads=1)
               for number, names in enumerate(groups)]
    outputs = {}
    for names, driver in zip(groups, drivers):
        done = driver.wait()
        reports = done.reports()
        if len(reports) != len(names):
            pytest.fail(f"{names[len(reports)]} failed:\n{done.rest()[-4000:]}")
        outputs.update(zip(names, [output for output, _ in reports]))
    return outputs


def checkpoint_dir(data, name):
    return data["root"] / f"{name}_ck"  # where the fixture above saves each model


def test_every_family_loads_through_one_from_pretrained():
    assert {family.from_pretrained.__func__ for family in (MegaLanguageModel, MegaTranslationModel,
                                                           MegaSequenceClassifier)} == {
        FromPretrained.from_pretrained.__func__}
    with pytest.raises(ValueError, match="a classifier hub takes one checkpoint, got 2"):
        ClassifierHubInterface(None, None, [torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)])


# ---------------------------------------------------------------- language model


@pytest.fixture(scope="module")
def lm_hub(data, trained):
    return MegaLanguageModel.from_pretrained(checkpoint_dir(data, "lm"), checkpoint_file="checkpoint_last.pt",
                                             data_name_or_path=str(data["lm"] / "bin"))


def test_lm_hub_is_fairseqs_generator_interface(lm_hub):
    assert type(lm_hub) is GeneratorHubInterface
    assert type(lm_hub.models[0]) is MegaLanguageModel and not lm_hub.models[0].training


def test_score_equals_fairseq_eval_lm(lm_hub, data, trained):
    """eval-lm with --sample-break-mode eos scores each test line from an eos, as .score() does
    (eval-lm also scores the line's final eos, which .score() leaves out)."""
    word_probs = {}
    for sample_id, fields in re.findall(r"eval_lm:(\d+) (.*)$", trained["eval_lm"], flags=re.M):
        word_probs[int(sample_id)] = [(w, float(p)) for w, p in re.findall(r"(\S+) \[(-?[0-9.]+)\]", fields)]
    lines = (data["lm"] / "test.txt").read_text().splitlines()
    assert sorted(word_probs) == list(range(len(lines)))
    scored = lm_hub.score(lines)
    for line, hypo, sample_id in zip(lines, scored, range(len(lines))):
        words, probs = zip(*word_probs[sample_id][:-1])
        assert word_probs[sample_id][-1][0] == "</s>" and " ".join(words) == line
        np.testing.assert_allclose(hypo["positional_scores"].numpy(), probs, atol=2e-6)


def test_score_equals_the_forward(lm_hub, data):
    model = lm_hub.models[0]
    line = (data["lm"] / "test.txt").read_text().splitlines()[0]
    tokens = lm_hub.encode(line)  # the words, then eos
    source = torch.cat([tokens.new_tensor([lm_hub.src_dict.eos()]), tokens[:-1]])
    with torch.no_grad():
        lprobs = model.get_normalized_probs(model(source[None]), log_probs=True)[0]
    expected = lprobs[torch.arange(len(tokens) - 1), tokens[:-1]]
    hypo = lm_hub.score(line)
    torch.testing.assert_close(hypo["positional_scores"], expected, atol=1e-5, rtol=0)
    assert torch.equal(hypo["tokens"], tokens[:-1])


def test_seeded_sampling_is_reproducible(lm_hub):
    prefix = "w3 w4"

    def sample(seed):
        torch.manual_seed(seed)
        return lm_hub.sample(prefix, sampling=True, beam=1, max_len_b=8)

    samples = [sample(seed) for seed in range(6)]
    assert samples == [sample(seed) for seed in range(6)]
    assert len(set(samples)) > 1, samples
    assert all(s.startswith(prefix + " ") and len(s.split()) > 2 for s in samples)


def test_greedy_sample_is_the_argmax_of_the_forward(lm_hub):
    model, vocab = lm_hub.models[0], lm_hub.src_dict
    prefix = lm_hub.encode("w7")[:-1]
    hypo = lm_hub.generate(prefix, beam=1, max_len_b=8)[0]["tokens"]
    assert torch.equal(hypo[:len(prefix)], prefix) and len(hypo) > len(prefix) + 1
    with torch.no_grad():
        for t in range(len(prefix), len(hypo) - 1):
            source = torch.cat([prefix.new_tensor([vocab.eos()]), hypo[:t]])
            logits = model(source[None])[0][0, -1]
            logits[vocab.pad()] = -float("inf")
            assert hypo[t] == logits.argmax(), t


# ---------------------------------------------------------------- translation


@pytest.fixture(scope="module")
def mt_hub(data, trained):
    return MegaTranslationModel.from_pretrained(checkpoint_dir(data, "mt"), checkpoint_file="checkpoint_last.pt",
                                                data_name_or_path=str(data["mt"] / "bin"), bpe="sentencepiece",
                                                sentencepiece_model=str(data["mt"] / "spm.model"))


def test_translate_encodes_with_sentencepiece_like_the_prepared_data(mt_hub, data):
    raw = (data["mt"] / "test.raw.en").read_text().splitlines()
    pieces = (data["mt"] / "test.en").read_text().splitlines()
    assert [mt_hub.apply_bpe(line) for line in raw] == pieces and all("▁" in p for p in pieces)


def test_translate_equals_fairseq_generate(mt_hub, data, trained):
    hypotheses = dict(re.findall(r"^D-(\d+)\t\S+\t(.*)$", trained["generate"], flags=re.M))
    raw = (data["mt"] / "test.raw.en").read_text().splitlines()
    assert sorted(map(int, hypotheses)) == list(range(len(raw)))
    translations = mt_hub.translate(raw, beam=2)
    assert translations == [hypotheses[str(i)] for i in range(len(raw))]
    assert mt_hub.translate(raw[0], beam=2) == translations[0]
    assert all("▁" not in t and t == t.strip() and t for t in translations)


def test_translation_learned_the_mapping(mt_hub, data):
    raw = (data["mt"] / "test.raw.en").read_text().splitlines()
    references = (data["mt"] / "test.raw.de").read_text().splitlines()
    correct = sum(h == r for h, r in zip(mt_hub.translate(raw, beam=2), references))
    assert correct >= len(raw) * 3 // 4, f"{correct} of {len(raw)} after {MT_UPDATES} updates"


# ---------------------------------------------------------------- classifiers


@pytest.fixture(scope="module")
def classifiers(data, trained):
    return {name: MegaSequenceClassifier.from_pretrained(checkpoint_dir(data, name), "checkpoint_last.pt",
                                                         str(data[name]))
            for name in CLASSIFIERS}


def raw_test_split(name, data):
    """The raw test examples and their labels: from the release files the fixtures wrote, for
    pixels the arrays of the Pathfinder reader, for speech the WAV files of the test list."""
    if name == "listops":
        rows = [line.split("\t") for line in (data[name] / "basic_test.tsv").read_text().splitlines()[1:]]
        return [source for source, _ in rows], [int(target) for _, target in rows]
    if name == "retrieval":
        rows = [line.split("\t") for line in (data[name] / "new_aan_pairs.test.tsv").read_text().splitlines()]
        return [(first, second) for _, _, _, first, second in rows], [int(float(row[0])) for row in rows]
    if name == "pathfinder":
        records = list(read_pathfinder(data[name], "test"))
        return [r.inputs[0].reshape(32, 32) for r in records], [r.label for r in records]
    clips = speech_commands_split(data["speech_raw"], data["speech_rules"]).clips["test"]
    return [str(path) for path, _ in clips], [label for _, label in clips]




@pytest.mark.parametrize("name", CLASSIFIERS)
def test_predict_equals_the_tasks_batches_and_fairseq_validate(classifiers, data, trained, name):
    hub = classifiers[name]
    assert isinstance(hub, ClassifierHubInterface) and not hub.model.training
    examples, labels = raw_test_split(name, data)
    logits = hub.predict(examples, return_logits=True, batch_size=3)  # other batches than the task's
    torch.testing.assert_close(logits, task_logits(hub), atol=1e-5, rtol=1e-5)
    assert len({tuple(row) for row in logits.round(decimals=4).tolist()}) > 1  # the inputs reach the model
    predictions = hub.predict(examples)
    assert predictions == logits.argmax(dim=-1).tolist() and hub.predict(examples[1]) == predictions[1]
    torch.testing.assert_close(hub.predict_proba(examples), logits.softmax(dim=-1))
    accuracy = re.findall(r"valid on 'test' subset .*?\| accuracy ([0-9.]+)", trained[f"validate_{name}"])
    assert accuracy and abs(100 * np.mean(np.array(predictions) == labels) - float(accuracy[-1])) < 0.051


def test_tokens_from_text_or_token_lists(classifiers, data):
    hub = classifiers["listops"]
    texts, _ = raw_test_split("listops", data)
    tokens = [text.replace("(", " ").replace(")", " ").split() for text in texts[:3]]
    torch.testing.assert_close(hub.predict(tokens, return_logits=True), hub.predict(texts[:3], return_logits=True))
    with pytest.raises(DataError, match="^example 1: tokens not in the dictionary: banana$"):
        hub.predict([texts[0], "( [MAX 2 banana ] )"])


def test_pairs_need_two_documents(classifiers):
    with pytest.raises(ValueError, match="^example 0: this model classifies pairs"):
        classifiers["retrieval"].predict("one document")


def test_pixels_from_arrays_of_any_dtype_and_image_files(classifiers, data):
    hub = classifiers["pathfinder"]
    images = raw_test_split("pathfinder", data)[0][:2]
    expected = hub.predict(images, return_logits=True)
    for convert in (lambda a: a.astype(np.float64), lambda a: torch.from_numpy(a.astype(np.int64)),
                    lambda a: a.reshape(-1)):
        torch.testing.assert_close(hub.predict([convert(a) for a in images], return_logits=True), expected)
    folder = next(data["pathfinder"].glob("imgs/*"))
    png = sorted(folder.glob("*.png"))[0]
    from PIL import Image

    torch.testing.assert_close(hub.predict(png, return_logits=True),
                               hub.predict(np.asarray(Image.open(png).convert("L")), return_logits=True))
    halves = images[0] / 2.0  # fractional values are standardised as they are, not rounded
    assert not torch.equal(hub.predict(halves, return_logits=True),
                           hub.predict(halves.astype(np.uint8), return_logits=True))
    with pytest.raises(DataError, match=r"^example 0: pixel values 0\.0\.\.256\.0 outside 0-255"):
        hub.predict(np.full((32, 32), 256.0) * (np.arange(1024).reshape(32, 32) > 0))


def test_waveforms_follow_the_clip_rules_of_the_prepared_data(classifiers, data, tmp_path):
    hub = classifiers["speech"]
    assert str(hub.task.cfg.short_clips) == "drop" and hub.rules.short_clips == "pad"  # from meta.json
    assert str(hub.task.cfg.shorten_method) == "none" and hub.rules.shorten_method == "truncate"
    clip = tone(1, length=CLIP - 1000, seed=5)
    soundfile.write(tmp_path / "short.wav", clip, 16000, subtype="PCM_16")
    soundfile.write(tmp_path / "padded.wav", np.concatenate([clip, np.zeros(1000, np.float32)]), 16000,
                    subtype="PCM_16")
    torch.testing.assert_close(hub.predict(tmp_path / "short.wav", return_logits=True),
                               hub.predict(tmp_path / "padded.wav", return_logits=True))
    soundfile.write(tmp_path / "8k.wav", tone(1, length=8000, rate=8000), 8000, subtype="PCM_16")
    with pytest.raises(DataError, match="8k.wav: sample rate 8000 Hz, expected 16000 \\(pass --resample"):
        hub.predict(str(tmp_path / "8k.wav"))
