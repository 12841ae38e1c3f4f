"""The translation scripts on tiny data: scripts/prepare_wmt16_en_de.sh end to end on a few hundred
generated sentence pairs (and its refusals of bad input), scripts/prepare_translation.sh, which it
runs, on a pair of other language codes, mega_fairseq.data.mt's scoring of fairseq-generate's output,
scripts/eval_bleu.sh on a two-epoch fairseq transformer trained on the prepared data, and raw text
translated by fairseq-interactive as fairseq-generate translates it. Checkpoint averaging and the BLEU
helpers: tests/unit/test_average_checkpoints.py and tests/unit/test_mt_data.py."""

import io
import os
import random
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from helpers import ROOT, SCRIPTS
from helpers.fairseq_jobs import check
from helpers.fairseq_jobs import run_script as run
from helpers.tiny import WMT_SIZES, write_pair_raw, write_wmt_raw
from mega_fairseq.data import mt as mt_data

VOCAB = 200


# ---------------------------------------------------------------- data


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return write_wmt_raw(tmp_path_factory.mktemp("wmt_raw"))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, raw):
    out = tmp_path_factory.mktemp("wmt") / "prepared"
    output = check(run("bash", SCRIPTS / "prepare_wmt16_en_de.sh", "--vocab-size", VOCAB, out, raw))
    return out, output


def leftovers(out: Path):
    """Anything the script left beside OUT_DIR besides OUT_DIR itself (temporary folders)."""
    return [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def load_split(bin_dir: Path, split: str, lang: str):
    from fairseq.data import Dictionary, data_utils

    dictionary = Dictionary.load(str(bin_dir / f"dict.{lang}.txt"))
    dataset = data_utils.load_indexed_dataset(str(bin_dir / f"{split}.en-de.{lang}"), dictionary)
    return dictionary, [dataset[i] for i in range(len(dataset))]


# ---------------------------------------------------------------- prepare


def test_prepare_outputs(prepared, raw):
    import sentencepiece as spm

    out, output = prepared
    assert "joined dictionary" in output
    assert sorted(p.name for p in out.iterdir()) == ["bin", "ref", "spm.model", "spm.vocab"]
    assert leftovers(out) == []
    bin_dir = out / "bin"
    # --joined-dictionary: one vocabulary for both sides
    assert (bin_dir / "dict.en.txt").read_text() == (bin_dir / "dict.de.txt").read_text()
    model = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    assert model.get_piece_size() == VOCAB
    assert len((out / "spm.vocab").read_text(encoding="utf-8").splitlines()) == VOCAB
    for split in ("valid", "test"):
        # the references are the files as given
        for lang in ("en", "de"):
            assert (out / "ref" / f"{split}.{lang}").read_bytes() == (raw / f"{split}.{lang}").read_bytes()
        for lang in ("en", "de"):
            dictionary, tokens = load_split(bin_dir, split, lang)
            text = (raw / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            assert len(tokens) == len(text) == WMT_SIZES[split]
            decoded = [model.decode(dictionary.string(t).split()) for t in tokens]
            assert "<unk>" not in " ".join(dictionary.string(t) for t in tokens)
            # normalised (typographic quotes, doubled spaces) and nothing else
            assert decoded == mt_data.normalise_lines(text, lang)
            typographic = re.compile("[„“”]|  ")
            assert any(typographic.search(line) for line in text)
            assert not any(typographic.search(line) for line in decoded)


def test_prepare_cleans_training_pairs(prepared, raw):
    import sentencepiece as spm

    out, _ = prepared
    model = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    src, tgt = ((raw / f"train.{lang}").read_text(encoding="utf-8").splitlines() for lang in ("en", "de"))
    pieces = [(model.encode(s), model.encode(t))
              for s, t in zip(mt_data.normalise_lines(src, "en"), mt_data.normalise_lines(tgt, "de"))]
    kept = [(s, t) for s, t in pieces
            if len(s) <= 1.5 * len(t) and len(t) <= 1.5 * len(s) and max(len(s), len(t)) <= 250]
    assert len(pieces[5][1]) > 1.5 * len(pieces[5][0]) and 250 <= len(kept) < WMT_SIZES["train"]
    dictionary, en = load_split(out / "bin", "train", "en")
    _, de = load_split(out / "bin", "train", "de")
    assert len(en) == len(de) == len(kept)
    decode = lambda ids: model.decode(dictionary.string(ids).split())  # noqa: E731
    assert [decode(t) for t in de[:10]] == [model.decode(t) for _, t in kept[:10]]


def test_prepare_refuses_to_overwrite(prepared, raw):
    out, _ = prepared
    before = (out / "bin" / "train.en-de.en.bin").stat().st_mtime_ns
    result = run("bash", SCRIPTS / "prepare_wmt16_en_de.sh", "--vocab-size", VOCAB, out, raw)
    assert result.returncode != 0 and "FORCE=1" in result.stderr and str(out) in result.stderr
    assert (out / "bin" / "train.en-de.en.bin").stat().st_mtime_ns == before
    assert leftovers(out) == []


def break_raw(folder: Path, problem: str):
    if problem == "mismatch":
        lines = (folder / "valid.de").read_text(encoding="utf-8").splitlines()
        (folder / "valid.de").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
        return ["valid.en has 20 lines", "valid.de has 19"]
    if problem == "empty":
        lines = (folder / "train.en").read_text(encoding="utf-8").splitlines()
        lines[6] = "  "
        (folder / "train.en").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return ["train.en: line 7 is empty"]
    if problem == "missing":
        (folder / "test.de").unlink()
        return ["missing test.de in"]
    if problem == "utf8":
        with open(folder / "test.en", "ab") as f:
            f.write(b"caf\xe9\n")
        return ["test.en: line 25 is not valid UTF-8"]
    raise ValueError(problem)


@pytest.mark.parametrize("problem", ["mismatch", "empty", "missing", "utf8"])
def test_prepare_rejects_bad_input(tmp_path, problem):
    raw = write_wmt_raw(tmp_path / "raw", sizes={"train": 30, "valid": 20, "test": 24})
    expected = break_raw(raw, problem)
    out = tmp_path / "out"
    result = run("bash", SCRIPTS / "prepare_wmt16_en_de.sh", "--vocab-size", VOCAB, out, raw)
    assert result.returncode != 0
    for part in expected:
        assert part in result.stderr, result.stderr
    assert not out.exists() and leftovers(out) == []


def test_prepare_without_sacremoses(tmp_path, raw):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sacremoses.py").write_text("raise ImportError('No module named sacremoses')\n")
    out = tmp_path / "out"
    result = run("bash", SCRIPTS / "prepare_wmt16_en_de.sh", out, raw,
                 env={"PYTHONPATH": os.pathsep.join([str(shim), os.environ["PYTHONPATH"]])})
    assert result.returncode != 0 and "pip install sacremoses" in result.stderr
    assert not out.exists()


def test_prepare_download_failure_says_what_to_place(tmp_path):
    out = tmp_path / "out"
    result = run("bash", SCRIPTS / "prepare_wmt16_en_de.sh", out,
                 env={"EUROPARL_URL": f"file://{tmp_path}/no-such-archive.tgz"})
    assert result.returncode != 0
    assert "no-such-archive.tgz" in result.stderr
    for name in ("train.en", "train.de", "valid.en", "valid.de", "test.en", "test.de", "RAW_DIR"):
        assert name in result.stderr
    assert not out.exists() and not list((tmp_path / "out.raw").glob("*.part"))


def test_prepare_failure_midway_leaves_nothing(tmp_path, raw):
    out = tmp_path / "out"
    result = run("bash", SCRIPTS / "prepare_wmt16_en_de.sh", "--vocab-size", "5000", out, raw)
    assert result.returncode != 0 and "sentencepiece training failed" in result.stderr
    assert "Vocabulary size too high (5000)" in result.stderr
    assert not out.exists() and leftovers(out) == [] and list(tmp_path.iterdir()) == []


def tgz(path: Path, members: dict):
    with tarfile.open(path, "w:gz") as archive:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return f"file://{path}"


def test_prepare_download_path_assembles_the_training_corpus(tmp_path):
    """The three training archives (served from local files), unpacked and joined into train.{en,de};
    pairs with an empty side are dropped. The test sets are already there (sacrebleu would fetch
    them) and broken on purpose, so the run stops at the input check, before the heavy steps."""
    served = tmp_path / "served"
    served.mkdir()
    urls = {
        "EUROPARL_URL": tgz(served / "de-en.tgz", {"europarl-v7.de-en.en": "Hello.\n\nGood day.\n",
                                                  "europarl-v7.de-en.de": "Hallo.\nLeer.\nGuten Tag.\n"}),
        "COMMONCRAWL_URL": tgz(served / "cc.tgz", {"commoncrawl.de-en.en": "A cat.\n",
                                                   "commoncrawl.de-en.de": "Eine Katze.\n",
                                                   "commoncrawl.fr-en.en": "Not this.\n"}),
        "NEWS_COMMENTARY_URL": tgz(served / "nc.tgz", {
            "training-parallel-nc-v11/news-commentary-v11.de-en.en": "News.\n",
            "training-parallel-nc-v11/news-commentary-v11.de-en.de": "Nachrichten.\n"}),
    }
    out = tmp_path / "wmt16"
    downloaded = write_wmt_raw(tmp_path / "wmt16.raw", sizes={"valid": 3, "test": 2})
    (downloaded / "test.de").write_text("Nur eine Zeile.\n", encoding="utf-8")
    result = run("bash", SCRIPTS / "prepare_wmt16_en_de.sh", out, env=urls)
    assert result.returncode != 0 and "test.en has 2 lines but" in result.stderr, result.stderr
    assert (downloaded / "train.en").read_text(encoding="utf-8") == "Hello.\nGood day.\nA cat.\nNews.\n"
    assert (downloaded / "train.de").read_text(encoding="utf-8") == "Hallo.\nGuten Tag.\nEine Katze.\nNachrichten.\n"
    assert "1 with an empty side dropped" in result.stderr
    assert sorted(p.name for p in downloaded.glob("*.tgz")) == ["commoncrawl.tgz", "europarl-v7.tgz",
                                                                "news-commentary-v11.tgz"]
    assert not out.exists() and leftovers(out) == []


def test_prepare_dry_run_and_options(tmp_path, raw):
    out = tmp_path / "out"
    output = check(run("bash", SCRIPTS / "prepare_wmt16_en_de.sh", out, raw, env={"DRY_RUN": "1"}))
    assert "32000-piece" in output and "train: 300 sentence pairs" in output and not out.exists()
    bad = run("bash", SCRIPTS / "prepare_wmt16_en_de.sh", "--vocab-size", "many", out, raw)
    assert bad.returncode != 0 and "'many'" in bad.stderr
    inside = run("bash", SCRIPTS / "prepare_wmt16_en_de.sh", raw.parent, raw, env={"FORCE": "1"})
    assert inside.returncode != 0 and "inside OUT_DIR" in inside.stderr and raw.is_dir()
    helped = check(run("bash", SCRIPTS / "prepare_wmt16_en_de.sh", "--help"))
    assert "newstest2014" in helped and "--vocab-size" in helped


def test_prepare_any_pair(tmp_path):
    """The general script on language codes no script names: the checks read the pair's files; the
    pair must be given and be two codes (refused before any file is read)."""
    raw = write_pair_raw(tmp_path / "raw", "fr", "xx", sizes={"train": 30, "valid": 20, "test": 24})
    out = tmp_path / "out"
    script = SCRIPTS / "prepare_translation.sh"
    output = check(run("bash", script, "--src", "fr", "--tgt", "xx", raw, out, env={"DRY_RUN": "1"}))
    assert "train: 30 sentence pairs" in output and "(fr-xx) into" in output and not out.exists()
    for pair, expected in ([[], "--src XX --tgt YY"], [["--src", "fr", "--tgt", "fr"], "must differ"],
                           [["--src", "fr", "--tgt", "x-y"], "got 'x-y'"]):
        refused = run("bash", script, *pair, raw, out)
        assert refused.returncode != 0 and expected in refused.stderr, refused.stderr
    assert not out.exists() and leftovers(out) == []


# ---------------------------------------------------------------- scoring fairseq-generate's output


def generate_output(hyps, refs, sources, shuffle_seed=0):
    """fairseq-generate's output for these sentences, in a shuffled (length-sorted-like) order."""
    order = list(range(len(hyps)))
    random.Random(shuffle_seed).shuffle(order)
    lines = ["2024-01-01 | INFO | fairseq_cli.generate | loading"]
    for i in order:
        lines += [f"S-{i}\t{sources[i]}", f"T-{i}\t{refs[i]}", f"H-{i}\t-0.5\t{hyps[i]}",
                  f"D-{i}\t-0.5\t{hyps[i]}", f"P-{i}\t-0.1 -0.2"]
    return "\n".join(lines + ["Generate test with beam=5: BLEU4 = 1.00"]) + "\n"


def score(capsys, gen: Path, data: Path, *extra):
    """mega_fairseq.data.mt score in this process: (stdout lines, stderr)."""
    mt_data.main(["score", "--generate-output", str(gen), "--data-dir", str(data), *map(str, extra)])
    captured = capsys.readouterr()
    return captured.out.strip().splitlines(), captured.err


def test_score_orders_and_counts(prepared, tmp_path, capsys):
    out, _ = prepared
    refs = (out / "ref" / "test.de").read_text(encoding="utf-8").splitlines()
    sources = (out / "ref" / "test.en").read_text(encoding="utf-8").splitlines()
    gen = tmp_path / "generate-test.txt"
    gen.write_text(generate_output(refs, refs, sources), encoding="utf-8")
    lines, err = score(capsys, gen, out, "--subset", "test", "--output", tmp_path / "scored")
    assert "24 hypotheses for 24 source sentences" in err
    assert lines[-2] == "tokenized BLEU (compound split): 100.00"
    signature = r"nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:.*"
    assert re.fullmatch(rf"SacreBLEU: 100\.00 \(signature {signature}\)", lines[-1]), lines
    assert (tmp_path / "scored" / "test.hyp.de").read_text(encoding="utf-8").splitlines() == refs
    # hypotheses are put back in the order of the source: a swapped pair lowers the score
    swapped = refs[:]
    swapped[0], swapped[1] = refs[1], refs[0]
    gen.write_text(generate_output(swapped, refs, sources), encoding="utf-8")
    lines, _ = score(capsys, gen, out)
    assert not lines[-1].startswith("SacreBLEU: 100.00") and not lines[-2].endswith(": 100.00")
    # without ref/, the T- lines are the references
    bare = tmp_path / "bare"
    shutil.copytree(out / "bin", bare / "bin")
    gen.write_text(generate_output(refs, refs, sources), encoding="utf-8")
    lines, err = score(capsys, gen, bare)
    assert "the T- lines" in err and lines[-2].endswith(": 100.00")
    # a dropped sentence is an error
    gen.write_text(generate_output(refs[:-1], refs[:-1], sources), encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        score(capsys, gen, out)
    assert exit_info.value.code == 2
    assert "23 hypotheses for 24 source sentences (missing ids [23])" in capsys.readouterr().err


# ---------------------------------------------------------------- end to end


ARCHS = {
    "transformer": ["--arch", "transformer", "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32",
                    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"],
    "mega": ["--user-dir", ROOT / "mega_fairseq", "--arch", "mega_mt_tiny", "--encoder-hidden-dim", "32",
             "--decoder-hidden-dim", "32", "--encoder-z-dim", "8", "--decoder-z-dim", "8"],
}


@pytest.fixture(scope="module", params=list(ARCHS))
def transformer(tmp_path_factory, prepared, request):
    """fairseq's own transformer and a Mega model, tiny, trained for two short epochs on the
    prepared data."""
    out, _ = prepared
    save = tmp_path_factory.mktemp(request.param) / "checkpoints"
    check(run("fairseq-train", out / "bin", *ARCHS[request.param], "--task", "translation", "--cpu",
              "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16",
              "--decoder-embed-dim", "16", "--share-all-embeddings",
              "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "4000", "--max-epoch", "2",
              "--save-dir", save, "--no-progress-bar", "--log-interval", "1", "--seed", "1",
              "--num-workers", "0", timeout=600))
    return save


def test_eval_bleu_end_to_end(transformer, prepared, tmp_path):
    out, _ = prepared
    keep = tmp_path / "kept"
    result = run("bash", SCRIPTS / "eval_bleu.sh", transformer / "checkpoint_last.pt", out,
                 "--max-len-b", "5", env={"CPU": "1", "AVERAGE": "2", "OUTPUT": str(keep)})
    output = check(result)
    assert "--beam 5 --lenpen 0.5" in output and "--bpe sentencepiece --sentencepiece-model" in output
    assert "--required-batch-size-multiple 1" in output
    assert "averaging 2 checkpoints" in output and (transformer / "averaged_last2_epochs.pt").is_file()
    assert "24 hypotheses for 24 source sentences" in output
    last = result.stdout.strip().splitlines()[-2:]
    assert re.fullmatch(r"tokenized BLEU \(compound split\): \d+\.\d\d", last[0]), last
    assert re.fullmatch(r"SacreBLEU: \d+\.\d\d \(signature nrefs:1\|case:mixed.*\)", last[1]), last
    hyps = (keep / "test.hyp.de").read_text(encoding="utf-8").splitlines()
    generated = (keep / "generate-test.txt").read_text(encoding="utf-8")
    assert len(hyps) == 24 and hyps[3] == re.search(r"^D-3\t[^\t]*\t(.*)$", generated, re.M).group(1)


def test_eval_bleu_bad_arguments(prepared, tmp_path):
    out, _ = prepared
    missing = run("bash", SCRIPTS / "eval_bleu.sh", tmp_path / "nope.pt", out)
    assert missing.returncode != 0 and "nope.pt" in missing.stderr
    no_subset = run("bash", SCRIPTS / "eval_bleu.sh", tmp_path / "nope.pt", out, env={"SUBSET": "dev"})
    assert no_subset.returncode != 0 and "no subset 'dev'" in no_subset.stderr
    not_data = run("bash", SCRIPTS / "eval_bleu.sh", tmp_path / "nope.pt", tmp_path)
    assert not_data.returncode != 0 and "dict.en.txt" in not_data.stderr
    no_spm = tmp_path / "no_spm"
    shutil.copytree(out / "bin", no_spm / "bin")
    missing_spm = run("bash", SCRIPTS / "eval_bleu.sh", tmp_path / "nope.pt", no_spm)
    assert missing_spm.returncode != 0 and f"{no_spm}/spm.model is missing" in missing_spm.stderr
    bad_beam = run("bash", SCRIPTS / "eval_bleu.sh", tmp_path / "nope.pt", out, env={"BEAM": "0"})
    assert bad_beam.returncode != 0 and "BEAM" in bad_beam.stderr
    dry = check(run("bash", SCRIPTS / "eval_bleu.sh", out / "spm.model", out, "--nbest", "1",
                    env={"DRY_RUN": "1", "AVERAGE": "5", "AVERAGE_BY": "update", "SUBSET": "valid", "BEAM": "4",
                         "LENPEN": "0.6", "MAX_TOKENS": "100"}))
    assert "last 5 update checkpoints of" in dry
    assert f"--path {out}/averaged_last5_updates.pt --gen-subset valid" in dry
    assert "--beam 4 --lenpen 0.6 --max-tokens 100 --bpe sentencepiece --sentencepiece-model" in dry
    assert dry.rstrip().endswith("--nbest 1")


def interactive(checkpoint: Path, data: Path, lines, *flags) -> str:
    """fairseq-interactive's output for these lines of raw text on stdin (on CPU)."""
    proc = subprocess.run(["fairseq-interactive", data / "bin", "--user-dir", ROOT / "mega_fairseq", "--path",
                           checkpoint, "--cpu", "--beam", "5", *flags], input="".join(f"{line}\n" for line in lines),
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def lines_of(kind: str, output: str) -> dict:
    """{sentence id: the rest of the line} of fairseq's KIND-i lines (the first, best, of each id)."""
    found = {}
    for sid, rest in re.findall(rf"^{kind}-(\d+)\t(.*)$", output, re.M):
        found.setdefault(int(sid), rest)
    return found


@pytest.mark.parametrize("transformer", ["mega"], indirect=True)
def test_interactive_translates_raw_text(transformer, prepared):
    """Raw sentences of the test split piped to fairseq-interactive with --bpe sentencepiece
    --sentencepiece-model become the model's pieces (no <unk>) and get fairseq-generate's
    translation of the same sentence: the same pieces (H-) and detokenised text (D-). Without the
    flags every word is <unk>."""
    import sentencepiece as spm
    from fairseq.data import Dictionary

    out, _ = prepared
    checkpoint = transformer / "checkpoint_last.pt"
    sources = (out / "ref" / "test.en").read_text(encoding="utf-8").splitlines()
    # interactive input is not punctuation-normalised: sentences that normalisation leaves alone
    ids = [i for i, (text, normal) in enumerate(zip(sources, mt_data.normalise_lines(sources, "en")))
           if text == normal][:4]
    sentencepiece = ["--bpe", "sentencepiece", "--sentencepiece-model", out / "spm.model"]
    translated = interactive(checkpoint, out, [sources[i] for i in ids], *sentencepiece)
    generated = check(run("fairseq-generate", out / "bin", "--user-dir", ROOT / "mega_fairseq", "--path", checkpoint,
                          "--cpu", "--beam", "5", "--gen-subset", "test", *sentencepiece))
    model = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    pieces = lines_of("S", translated)
    assert [model.decode(pieces[n].split()) for n in range(len(ids))] == [sources[i] for i in ids]
    assert not any("<unk>" in text for text in pieces.values())
    for kind in ("H", "D"):
        mine, theirs = lines_of(kind, translated), lines_of(kind, generated)
        assert [mine[n] for n in range(len(ids))] == [theirs[i] for i in ids], kind
    assert all(text.split("\t")[1] for text in lines_of("D", translated).values())
    # what fairseq-interactive makes of raw text without the flags: whitespace words, unknown
    dictionary = Dictionary.load(str(out / "bin" / "dict.en.txt"))
    assert set(dictionary.string(dictionary.encode_line(sources[ids[0]], add_if_not_exist=False)).split()) == {"<unk>"}
