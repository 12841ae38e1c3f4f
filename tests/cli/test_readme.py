"""Every command of the documentation's fenced ```bash blocks runs, page by page in PAGES order
(README.md, then the docs/ pages) and in each page's order, in one sandbox folder shared by all
pages (later pages use what earlier ones prepared and trained), with tiny overrides: generated raw
data where a page reads a release, tiny models and two updates appended to training commands
(Hydra overrides for scripts/train.sh, later flags for fairseq-train), one CPU process where a
page says NPROC=8; a pipeline (`echo TEXT | fairseq-interactive ...`) runs as one. The ```python
blocks (the Python interface) run after them, on what they trained, and must print. A command this
file does not know fails the test, and so does a docs/ page with commands that PAGES leaves out:
the docs cannot rot unseen. `make test` is this suite and is not rerun."""

import os
import re
import time
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import ROOT
from helpers.tiny import (TINY_LM_RECIPES, fake_enwik8, write_pair_raw, write_speech_commands, write_text_tsv,
                          write_wikitext, write_wmt_raw)

TINY_LRA = ["++model.encoder_layers=1", "++model.encoder_embed_dim=16", "++model.encoder_hidden_dim=32",
            "++model.encoder_z_dim=8", "++model.encoder_n_dim=2", "++model.classifier_hidden_dim=16",
            "optimization.max_update=2", "dataset.batch_size=4", "dataset.batch_size_valid=8",
            "lr_scheduler.warmup_updates=1"]
TINY_SPEECH = TINY_LRA + ["++model.encoder_chunk_size=100"]
TINY_MT = ["model.encoder_layers=1", "model.decoder_layers=1", "model.encoder_embed_dim=16",
           "model.decoder_embed_dim=16", "model.encoder_hidden_dim=32", "model.decoder_hidden_dim=32",
           "model.encoder_z_dim=8", "model.decoder_z_dim=8", "model.encoder_n_dim=2", "model.decoder_n_dim=2",
           "dataset.max_tokens=400", "optimization.max_update=5", "checkpoint.save_interval_updates=1",
           "lr_scheduler.warmup_updates=1"]
# fairseq-train of a classifier: the tiny size
TINY_CLASSIFIER = ["--encoder-layers", "1", "--encoder-embed-dim", "16", "--encoder-hidden-dim", "32",
                   "--encoder-z-dim", "8", "--encoder-n-dim", "2", "--classifier-hidden-dim", "16"]
TRAIN_OVERRIDES = {"lm/wikitext103": TINY_LM_RECIPES["lm/wikitext103"], "lm/enwik8": TINY_LM_RECIPES["lm/enwik8"],
                   "mt/wmt16_en_de": TINY_MT, "lra/listops": TINY_LRA, "speech/sc_raw": TINY_SPEECH}
SKIPPED = {"make test": "the test suite itself"}

# documented command -> arguments appended (tiny data)
APPEND = {
    "python -m demo.lm_corpus --out data/lm_raw": ["--max-train-words", "20000"],
    "python -m mega_fairseq.data.listops data/raw/listops": ["--train", "60", "--valid", "16", "--test", "16",
                                                             "--min-length", "10", "--max-length", "60"],
}
# evaluation script (or command) -> its output's last line
LAST_LINE = {
    "scripts/eval_lm.sh": r"perplexity: [0-9.]+|bits per character: [0-9.]+",
    "scripts/eval_bleu.sh": r"SacreBLEU: [0-9.]+ .*",
    "mega_fairseq.data.mt score": r"SacreBLEU: [0-9.]+ .*",
    "scripts/eval_cls.sh": r"test accuracy: [0-9.]+",
}


# the pages whose blocks run, in this order: the README's recipes prepare and train what the docs'
# commands then use (the plots read runs/lm and runs/wt103, the Python blocks several pages' runs)
PAGES = ["README.md", "docs/language_modeling.md", "docs/translation.md", "docs/lra.md", "docs/speech.md",
         "docs/training.md", "docs/python_interface.md"]


def fenced_blocks(language: str, page: str):
    """The bodies of a page's fenced blocks of that language, in page order."""
    return re.findall(rf"```{language}\n(.*?)```", (ROOT / page).read_text(), re.S)


def page_commands(page: str):
    """A page's commands: one per line of its ```bash blocks (continuation lines joined, comments cut)."""
    commands = []
    for block in fenced_blocks("bash", page):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s+#", line)[0].strip()
            if line:
                commands.append(line)
    return commands


COMMANDS = [command for page in PAGES for command in page_commands(page)]
# the ```python blocks (the Python interface), run after the commands, on what they trained
PYTHON_BLOCKS = [block for page in PAGES for block in fenced_blocks("python", page)]


def tiny(command: str, sandbox: Path):
    """(argv for bash -c, working folder, extra environment) of a documented command with tiny overrides."""
    env = {"CPU": "1", "WORKERS": "1"}
    words = shlex.split(command)
    assignments = {}
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        assignments[key] = value
    if assignments.get("NPROC") == "8" and "DRY_RUN" not in assignments:
        del assignments["NPROC"]  # one CPU process
    if words[0] == "make":
        if words[1].startswith("demo"):
            # not sandbox/demo: that is the link to the demo package
            words.append(f"DEMO_ARGS=--tiny --updates 2 --out {sandbox / 'demo_runs' / words[1]}")
        return words, ROOT, {**env, **assignments}
    if words[0] == "scripts/train.sh":
        words += TRAIN_OVERRIDES.get(words[1], []) if "DRY_RUN" not in assignments else []
    elif words[0] in ("scripts/prepare_wmt16_en_de.sh", "scripts/prepare_translation.sh"):
        words[1:1] = ["--vocab-size", "200"]
    elif words[0] == "fairseq-train":
        words += ["--max-update", "2", "--num-workers", "0"]
        words += TINY_CLASSIFIER if "mega_sequence_classification" in words else []
    elif words[0] == "fairseq-preprocess":
        words += ["--workers", "1"]
    elif words[0] == "fairseq-generate" or pipeline(words)[-1][0] == "fairseq-interactive":
        words += ["--cpu"]
    elif command in APPEND:
        words += APPEND[command]
    return words, sandbox, {**env, **assignments}


def pipeline(words):
    """The commands of a shell pipeline (``echo TEXT | fairseq-interactive ...``), each a list of words."""
    commands = [[]]
    for word in words:
        if word == "|":
            commands.append([])
        else:
            commands[-1].append(word)
    return commands


def shell_line(words) -> str:
    """The words quoted for bash -c, the pipes between the commands of a pipeline left bare."""
    return " | ".join(shlex.join(command) for command in pipeline(words))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A working folder that looks like the repository (scripts, configs, the package) with the raw
    data the documented commands read."""
    root = tmp_path_factory.mktemp("readme")
    for name in ("scripts", "configs", "mega_fairseq", "demo"):
        (root / name).symlink_to(ROOT / name)
    raw = root / "data" / "raw"
    write_wikitext(raw / "wikitext-103")
    with zipfile.ZipFile(raw / "enwik8.zip", "w") as archive:
        archive.writestr("enwik8", fake_enwik8(200_000))
    write_wmt_raw(raw / "wmt16_en_de")
    write_pair_raw(raw / "fr_en", "fr", "en")  # the README's own pair
    write_speech_commands(raw / "speech_commands", per_word=7)  # enough for the random 70/15/15 split
    write_text_tsv(raw / "reviews")  # negative, neutral, positive
    return root


@pytest.fixture(scope="module")
def results(sandbox):
    """Runs the commands in PAGES order; later ones use what earlier ones wrote."""
    done = {}
    for command in COMMANDS:
        if command in SKIPPED:
            continue
        argv, cwd, env = tiny(command, sandbox)
        started = time.time()
        proc = subprocess.run(["bash", "-c", shell_line(argv)], cwd=cwd, capture_output=True, text=True,
                              timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1", "VALID_BYTES": "20000",
                                                "TEST_BYTES": "30000", **env})
        done[command] = proc
        print(f"{time.time() - started:6.1f}s  {command}", flush=True)
    for number, block in enumerate(PYTHON_BLOCKS):
        done[f"python block {number}"] = subprocess.run([sys.executable, "-c", block], cwd=sandbox, capture_output=True,
                                                        text=True, timeout=600,
                                                        env={**os.environ, "OMP_NUM_THREADS": "1"})
    return done


def test_every_page_with_commands_runs():
    """Each page of PAGES exists, and every docs/ page with a bash or Python block is one of them."""
    assert all((ROOT / page).is_file() for page in PAGES)
    pages = {page for page in (str(path.relative_to(ROOT)) for path in (ROOT / "docs").rglob("*.md"))
             if fenced_blocks("bash", page) or fenced_blocks("python", page)}
    assert pages <= set(PAGES), f"add to PAGES: {sorted(pages - set(PAGES))}"


def test_every_readme_command_is_known():
    assert len(set(COMMANDS)) == len(COMMANDS), "a command appears twice: the results are kept by command"
    for command in COMMANDS:
        words = [w for w in shlex.split(command) if not re.fullmatch(r"[A-Z_]+=.*", w)]
        *feeders, words = pipeline(words)
        assert all(feeder[0] == "echo" for feeder in feeders), command
        assert command in SKIPPED or words[0] in ("make", "python", "fairseq-preprocess", "fairseq-train",
                                                   "fairseq-eval-lm", "fairseq-generate", "fairseq-interactive") \
            or words[0].startswith("scripts/"), command
    assert len(COMMANDS) >= 20 and "make demo" in COMMANDS


def test_scripts_with_a_shebang_are_executable():
    """The docs run them as scripts/NAME."""
    for path in (ROOT / "scripts").iterdir():
        if path.is_file() and path.read_bytes().startswith(b"#!"):
            assert os.access(path, os.X_OK), f"chmod +x {path.relative_to(ROOT)}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in SKIPPED])
def test_readme_command_runs(results, command):
    proc = results[command]
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{command}\n{output[-4000:]}"
    for script, pattern in LAST_LINE.items():
        if script in command:
            last = proc.stdout.strip().splitlines()[-1]
            assert re.fullmatch(pattern, last), f"{command}: last line {last!r}"
    if command.startswith("make demo"):
        assert re.search(r"^\| (mega|mega_lm|mega_sc_raw_tiny) ", proc.stdout, re.M), proc.stdout[-2000:]
    if "fairseq-interactive" in command:  # the line given, as sentencepiece pieces, and its translation
        pieces = re.findall(r"^S-0\t(.*)$", proc.stdout, re.M)
        assert pieces and set(pieces[0].split()) != {"<unk>"}, proc.stdout[-2000:]
        assert re.search(r"^H-0\t\S+\t", proc.stdout, re.M) and re.search(r"^D-0\t", proc.stdout, re.M), proc.stdout
    if "--print-alignment" in command:
        hypotheses = re.findall(r"^H-(\d+)\t", proc.stdout, re.M)
        aligned = re.findall(r"^A-(\d+)\t\d+-\d+", proc.stdout, re.M)
        assert hypotheses and aligned == hypotheses, proc.stdout[-2000:]
    if "DRY_RUN=1" in command:
        assert "torchrun --nproc_per_node=8 --nnodes=2 --node_rank=0 --master_addr=host0" in proc.stdout
    if "mega_fairseq.options --arch" in command:  # the arch's options with its values, then the task's
        arch = shlex.split(command)[shlex.split(command).index("--arch") + 1]
        assert re.search(rf"^option +{arch} +default", proc.stdout, re.M) and "\n--task " in proc.stdout, proc.stdout
    if "mega_fairseq.options --list-archs" in command:
        assert re.search(r"^mega_classifier: .*\n(  .*\n)*  mega_lra_listops ", proc.stdout, re.M), proc.stdout


@pytest.mark.parametrize("number", range(len(PYTHON_BLOCKS)))
def test_readme_python_block_runs(results, number):
    proc = results[f"python block {number}"]
    assert proc.returncode == 0, f"{PYTHON_BLOCKS[number]}\n{(proc.stdout + proc.stderr)[-4000:]}"
    assert proc.stdout.strip(), "the block prints its results"


def test_readme_has_python_blocks():
    """The three from_pretrained examples and the two of the layers (MegaStack, with incremental_state)."""
    assert sum("from_pretrained" in block for block in PYTHON_BLOCKS) == 3
    assert sum("MegaStack(" in block and "incremental_state=" in block for block in PYTHON_BLOCKS) == 2
    assert len(PYTHON_BLOCKS) == 5
