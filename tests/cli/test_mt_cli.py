"""The translation model end to end through fairseq's real command-line tools: fairseq-train for
every named arch, the Hydra recipes through scripts/train.sh, fairseq-generate with SacreBLEU,
fairseq-interactive on stdin, multilingual translation with language tokens, and clear errors
for a checkpoint of another dictionary."""

import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from helpers import ROOT, USER_DIR
from helpers.fairseq_jobs import driver_outputs, run
from helpers.tiny import MT_LANGS as LANGS, TINY_MT as TINY
from mega_fairseq.models.mega_config import option_names
from mega_fairseq.models.mega_translation import MT_PRESETS


def train(data, save_dir, *extra, arch="mega_mt_tiny", updates=2, check=True):
    return run(["fairseq-train", data, "--user-dir", USER_DIR, "--task", "translation", *LANGS, "--arch", arch,
                "--max-tokens", "400", "--optimizer", "adam", "--lr", "3e-3", "--max-update", str(updates),
                "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
                "--save-dir", save_dir, "--cpu", "--num-workers", "0", "--no-progress-bar", "--log-interval", "1",
                "--seed", "1", *extra], check=check)


def overridden(flags):
    """Config fields the flags set, and the derived fields that follow them."""
    names = {flag[2:].replace("-", "_") for flag in flags if flag.startswith("--")}
    return names | {derived for derived, source in MT_PRESETS.derived.items() if source in names}


@pytest.mark.parametrize("arch", list(MT_PRESETS.presets))
def test_every_named_arch_trains(mt_data, tmp_path, arch):
    _, out = train(mt_data, tmp_path, *TINY, arch=arch, updates=2)
    assert "num_updates 2" in out
    cfg = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)["cfg"]["model"]
    for name, value in MT_PRESETS.resolve(arch).items():
        if name not in overridden(TINY):
            assert cfg[name] == value, (arch, name, cfg[name])
    for prefix in ("encoder", "decoder"):
        assert all(cfg[name] is not None for name in option_names(prefix).values())


@pytest.fixture(scope="module")
def trained(mt_data, tmp_path_factory):
    save = tmp_path_factory.mktemp("mt_ckpt")
    train(mt_data, save, "--share-all-embeddings", "--encoder-chunk-size", "4", "--decoder-chunk-size", "4",
          updates=40)
    return save / "checkpoint_last.pt"


def test_generate_with_sacrebleu(mt_data, trained):
    _, out = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--path", trained, *LANGS,
                  "--gen-subset", "test", "--beam", "5", "--lenpen", "0.5", "--scoring", "sacrebleu", "--cpu",
                  "--batch-size", "7", "--required-batch-size-multiple", "1"])
    hypotheses = [line for line in out.splitlines() if line.startswith("H-")]
    assert len(hypotheses) == 30  # every test sentence, none dropped
    assert re.search(r"Generate test with beam=5: BLEU = [0-9.]+", out), out[-2000:]


def test_interactive_on_stdin(mt_data, trained):
    proc = subprocess.run(["fairseq-interactive", str(mt_data), "--user-dir", USER_DIR, "--path", str(trained),
                           *LANGS, "--beam", "3", "--nbest", "2", "--cpu"],
                          input="w1 w2 w3\nw7 w8 w9 w10 w11\n", capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    hypotheses = [line for line in proc.stdout.splitlines() if line.startswith("H-")]
    assert len(hypotheses) == 4  # two inputs, two best each


def test_sampling(mt_data, trained):
    _, out = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--path", trained, *LANGS,
                  "--gen-subset", "valid", "--sampling", "--sampling-topk", "5", "--beam", "1", "--cpu",
                  "--batch-size", "16", "--required-batch-size-multiple", "1", "--seed", "3"])
    assert len([line for line in out.splitlines() if line.startswith("H-")]) == 30


def test_checkpoint_of_another_dictionary_is_named(mt_data, trained, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for split in ("train", "valid", "test"):
        for lang in ("src", "tgt"):
            text = (Path(mt_data).parent / f"{split}.{lang}").read_text()
            (other / f"{split}.{lang}").write_text(text.replace("w1 ", " ".join(f"x{i}" for i in range(20)) + " "))
    run(["fairseq-preprocess", *LANGS, "--trainpref", other / "train", "--validpref", other / "valid",
         "--destdir", other / "bin", "--joined-dictionary", "--workers", "1"])
    code, out = run(["fairseq-generate", other / "bin", "--user-dir", USER_DIR, "--path", trained, *LANGS,
                     "--gen-subset", "valid", "--cpu", "--batch-size", "8"], check=False)
    assert code != 0
    assert "trained with another dictionary" in out and "dict.src.txt" in out, out[-2000:]


def test_multilingual_training_with_language_tokens(mt_data, tmp_path):
    """fairseq's translation_multi_simple_epoch: one model for src->tgt and tgt->src, with the
    target language's token before each source (--encoder-langtok tgt) and as the first target
    token (--decoder-langtok); fairseq-train, -validate, -generate and -interactive."""
    multilingual = ["--user-dir", USER_DIR, "--task", "translation_multi_simple_epoch", "--lang-pairs",
                    "src-tgt,tgt-src", "--encoder-langtok", "tgt", "--decoder-langtok", "--cpu", "--num-workers", "0"]
    checkpoint = tmp_path / "checkpoint_last.pt"
    inference = [mt_data, *multilingual, "--path", str(checkpoint), "--beam", "2", "--max-len-a", "0",
                 "--max-len-b", "5"]
    (tmp_path / "input.txt").write_text("w1 w2 w3\nw7 w8 w9 w10\n")
    (tmp_path / "langs.txt").write_text("src\ntgt\nxx\n")
    outputs = driver_outputs([
        ["train", [mt_data, *multilingual, "--sampling-method", "temperature", "--sampling-temperature", "1.5",
                   "--arch", "mega_mt_tiny", *TINY, "--max-tokens", "400", "--optimizer", "adam", "--lr", "3e-3",
                   "--max-update", "2", "--criterion", "label_smoothed_cross_entropy", "--save-dir", tmp_path,
                   "--disable-validation", "--no-epoch-checkpoints", "--no-progress-bar", "--seed", "1"]],
        ["validate", [mt_data, *multilingual, *LANGS, "--path", checkpoint, "--valid-subset", "test",
                      "--batch-size", "64", "--required-batch-size-multiple", "1"]],
        ["generate", [*inference, "--source-lang", "tgt", "--target-lang", "src", "--gen-subset", "test",
                      "--batch-size", "16", "--required-batch-size-multiple", "1"]],
        ["interactive", [*inference, *LANGS, "--input", tmp_path / "input.txt"]],
        # a fourth language makes the dictionaries one language token longer
        ["expect_error", "generate", [*inference, *LANGS, "--lang-dict", tmp_path / "langs.txt"]],
    ], tmp_path)
    train, validate, generate, interactive, another = outputs
    assert "num_updates 2" in train
    state = torch.load(checkpoint, weights_only=True)
    rows = len((mt_data / "dict.src.txt").read_text().splitlines()) + 4 + 2  # + specials + language tokens
    assert state["model"]["encoder.embedding.embed_tokens.weight"].size(0) == rows
    assert re.search(r"valid on 'test' subset .*\| bsz 30\b", validate), validate[-2000:]
    sources = re.findall(r"^S-\d+\t(.*)$", generate, re.M)
    assert len(sources) == 30 and all(s.startswith("__src__ t") for s in sources), generate[-2000:]
    # scored: the forced language token (stripped from the output), the hypothesis and eos
    scored = re.findall(r"^H-\d+\t\S+\t(.*)\nD-.*\nP-\d+\t(.*)$", generate, re.M)
    assert len(scored) == 30 and all(len(p.split()) == len(h.split()) + 2 for h, p in scored), generate[-2000:]
    sources = re.findall(r"^S-\d+\t(.*)$", interactive, re.M)
    assert sources == ["__tgt__ w1 w2 w3", "__tgt__ w7 w8 w9 w10"], interactive[-2000:]
    assert len(re.findall(r"^H-\d+\t", interactive, re.M)) == 2
    assert "trained with another dictionary" in another and str(mt_data / "dict.src.txt") in another, another[-2000:]


@pytest.mark.parametrize("recipe,arch", [("mt/wmt16_en_de", "mega_wmt_en_de"),
                                         ("mt/wmt16_en_de_big", "mega_wmt_en_de_big")])
def test_hydra_recipe_trains(mt_data, tmp_path, recipe, arch):
    tiny = ["model.encoder_layers=1", "model.decoder_layers=1", "model.encoder_embed_dim=16",
            "model.decoder_embed_dim=16", "model.encoder_hidden_dim=32", "model.decoder_hidden_dim=32",
            "model.encoder_z_dim=8", "model.decoder_z_dim=8", "model.encoder_n_dim=2", "model.decoder_n_dim=2",
            "task.source_lang=src", "task.target_lang=tgt", "dataset.max_tokens=400", "optimization.max_update=2",
            "checkpoint.save_interval_updates=1"]
    proc = subprocess.run(["bash", ROOT / "scripts" / "train.sh", recipe, mt_data, tmp_path, *tiny],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, CPU="1", OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cfg = torch.load(tmp_path / "checkpoints" / "checkpoint_last.pt", weights_only=True)["cfg"]
    assert cfg["model"]["_name"] == arch
    assert cfg["criterion"]["label_smoothing"] == 0.1 and cfg["optimizer"]["weight_decay"] == 0.05
    assert cfg["model"]["share_all_embeddings"] and cfg["model"]["truncation_length"] == 0
    assert cfg["model"]["dropout"] == MT_PRESETS.resolve(cfg["model"]["_name"])["dropout"]
    assert (tmp_path / "checkpoints" / "checkpoint_1_2.pt").exists()  # update checkpoints, for averaging


def test_big_recipe_is_the_base_recipe_with_the_big_preset():
    def settings(name):
        lines = (ROOT / "configs" / "mt" / f"{name}.yaml").read_text().splitlines()
        return [line for line in lines if line.strip() and not line.startswith("#")]

    base, big = settings("wmt16_en_de"), settings("wmt16_en_de_big")
    assert [line.replace("mega_wmt_en_de_big", "mega_wmt_en_de") for line in big] == base


def test_docs_table_is_the_preset_table():
    from mega_fairseq.models.mega_translation import preset_table

    table = preset_table()
    assert table in (ROOT / "docs" / "translation.md").read_text(), \
        f"update the table of translation archs in docs/translation.md:\n{table}"
