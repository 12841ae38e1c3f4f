"""Alignments of translation models through fairseq's real command-line tools: alignment-supervised
fairseq-train (--load-alignments, label_smoothed_cross_entropy_with_alignment), then
fairseq-generate --print-alignment on generated and on reference translations, --replace-unk,
and fairseq-interactive --print-alignment. All jobs run in one process (the job driver).

The task is a word-for-word translation whose alignment is known: each source word w<k> becomes
t<k>, in the same order, and names (words seen once, <unk> in the dictionary) are copied. The
test sentences have 3 to 10 words in batches of 8, so most sources are left-padded in their batch.
"""

import random
import re

import pytest

from helpers import USER_DIR
from helpers.fairseq_jobs import run_jobs
from helpers.tiny import MT_LANGS as LANGS, TINY_MT as TINY

UPDATES = 200


def write_aligned_pairs(folder, split, count, seed, name_share):
    """Source: 3 to 10 of the words w0..w39, one of them replaced by a name (a word of its own,
    copied to the target) in ``name_share`` of the sentences; target: t<k> for w<k>, the names
    copied; alignment: word i with word i."""
    rng = random.Random(seed)
    with open(folder / f"{split}.src", "w") as src, open(folder / f"{split}.tgt", "w") as tgt, \
            open(folder / f"{split}.align", "w") as align:
        for line in range(count):
            source = [f"w{k}" for k in rng.choices(range(40), k=rng.randint(3, 10))]
            target = [f"t{word[1:]}" for word in source]
            if rng.random() < name_share:
                position = rng.randrange(len(source))
                source[position] = target[position] = f"name{split}{line}"
            src.write(" ".join(source) + "\n")
            tgt.write(" ".join(target) + "\n")
            align.write(" ".join(f"{i}-{i}" for i in range(len(source))) + "\n")


def lines_by_id(output, tag):
    """{sentence id: text} of fairseq's "<tag>-<id>\\t..." output lines (after the score on H lines)."""
    return {int(m.group(1)): m.group(2) for m in re.finditer(rf"^{tag}-(\d+)\t(?:\S+\t)?(.*)$", output, re.M)}


def alignments(output):
    return {n: [tuple(map(int, pair.split("-"))) for pair in text.split()]
            for n, text in lines_by_id(output, "A").items()}


def word_by_word(hypothesis):
    """The known alignment: target word i with source word i."""
    return [(i, i) for i in range(len(hypothesis.split()))]


@pytest.fixture(scope="module")
def driven(tmp_path_factory):
    """{job name: (its output, the driver's status line)}: the jobs below, in one driver process."""
    root = tmp_path_factory.mktemp("mt_align")
    write_aligned_pairs(root, "train", 400, 0, name_share=0.3)
    write_aligned_pairs(root, "test", 24, 2, name_share=0.5)
    (root / "input.txt").write_text("w1 w2 w3\nw7 w8 w9 w10 w11 w12\n")
    save = root / "checkpoints"
    checkpoint = save / "checkpoint_last.pt"
    common = ["--user-dir", USER_DIR, *LANGS, "--cpu"]
    generate = [*common, "--path", checkpoint, "--gen-subset", "test", "--beam", "2", "--batch-size", "8",
                "--required-batch-size-multiple", "1"]
    raw = ["--dataset-impl", "raw"]
    jobs = {
        # a name is seen once in the source and once in the target: below --thresholdsrc 3, so <unk>
        "preprocess": ["preprocess", [*LANGS, "--trainpref", root / "train", "--testpref", root / "test",
                                      "--align-suffix", "align", "--joined-dictionary", "--thresholdsrc", "3",
                                      "--destdir", root / "bin", "--workers", "1"]],
        # --replace-unk reads the source text: the test split again, as text, with the same dictionary
        "preprocess_raw": ["preprocess", [*LANGS, "--testpref", root / "test", "--joined-dictionary",
                                          "--srcdict", root / "bin" / "dict.src.txt", *raw, "--destdir", root / "raw",
                                          "--workers", "1"]],
        # --alignment-lambda 1: with the default 0.05 the weights learn the alignment more slowly
        "train": ["train", [root / "bin", *common, "--task", "translation", "--arch", "mega_mt_tiny", *TINY,
                            "--share-all-embeddings", "--load-alignments",
                            "--criterion", "label_smoothed_cross_entropy_with_alignment", "--alignment-lambda", "1",
                            "--dropout", "0", "--optimizer", "adam", "--lr", "1e-2", "--max-tokens", "400",
                            "--max-update", str(UPDATES), "--disable-validation", "--save-interval", "1000",
                            "--save-dir", save, "--num-workers", "0", "--no-progress-bar", "--log-interval", "20",
                            "--seed", "1"]],
        "generate": ["generate", [root / "raw", *generate, *raw, "--print-alignment", "--replace-unk"]],
        "score_reference": ["generate", [root / "bin", *generate, "--score-reference", "--print-alignment"]],
        "interactive": ["interactive", [root / "bin", *common, "--path", checkpoint, "--beam", "2",
                                        "--print-alignment", "--input", root / "input.txt"]],
        "replace_unk_alone": ["expect_error", "generate", [root / "raw", *generate, *raw, "--replace-unk"]],
    }
    # one thread: the tiny model trains several times faster than with two threads on two busy cores
    ran = run_jobs(list(jobs.values()), root / "jobs", threads=1, merged=False)
    reports = ran.reports()
    assert ran.returncode == 0 and len(reports) == len(jobs), ran.stdout[-3000:] + ran.stderr[-3000:]
    done = dict(zip(jobs, reports))
    done["root"], done["log"] = root, ran.stderr  # fairseq logs to stderr
    return done


def test_alignment_supervised_training_lowers_the_alignment_loss(driven):
    losses = [float(v) for v in re.findall(r"train_inner\W.* alignment_loss=([0-9.]+)", driven["log"])]
    assert len(losses) == UPDATES // 20, driven["log"][-2000:]
    assert losses[-1] < losses[0] / 4, losses


def test_printed_alignments_point_at_the_aligned_source_words(driven):
    """Hypotheses (beam search, left-padded sources) and references (--score-reference): target
    word i is aligned with source word i."""
    for job in ("generate", "score_reference"):
        output, _ = driven[job]
        hypotheses, found = lines_by_id(output, "H"), alignments(output)
        assert len(found) == 24, output[-2000:]
        right = sum(pairs == word_by_word(hypotheses[n]) for n, pairs in found.items())
        assert right >= 22, (job, found)


def test_replace_unk_copies_the_aligned_source_word(driven):
    output, _ = driven["generate"]
    sources, hypotheses, found = lines_by_id(output, "S"), lines_by_id(output, "H"), alignments(output)
    references = (driven["root"] / "test.tgt").read_text().splitlines()
    copied = 0
    for n, hypothesis in hypotheses.items():
        words, source = hypothesis.split(), sources[n].split()
        assert "<unk>" not in words
        for source_word, target_word in found[n]:
            if words[target_word].startswith("name"):  # a replaced <unk>: the source word it is aligned with
                assert words[target_word] == source[source_word]
                copied += 1
    names = sum("name" in line for line in references)
    assert names >= 8 and copied >= names - 2, (copied, names, hypotheses)


def test_interactive_prints_alignments(driven):
    output, _ = driven["interactive"]
    hypotheses = lines_by_id(output, "H")
    assert sorted(hypotheses) == [0, 1], output[-2000:]
    assert alignments(output) == {n: word_by_word(hypotheses[n]) for n in hypotheses}, output[-2000:]


def test_replace_unk_without_alignments_is_named(driven):
    _, status = driven["replace_unk_alone"]
    assert status.startswith("JOB ERROR") and "--replace-unk" in status and "--print-alignment" in status, status
