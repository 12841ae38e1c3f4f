"""Official-style checkpoints (written from the official module structure, tests/helpers/official.py)
through the converter script and fairseq's own CLI: fairseq-validate's accuracy and loss equal those
computed in this process, fairseq-generate translates."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from helpers import USER_DIR
from helpers.fairseq_jobs import run_jobs
from helpers.official import (mt_official_args, official_args, official_classifier_shapes, official_mt_shapes,
                              random_tensors, save_official)
from mega_fairseq.conversion import convert as converter
from mega_fairseq.conversion.arguments import convert_official_args


def accuracy_and_loss(checkpoint, data, subset):
    """sentence_prediction's accuracy (percent) and loss (bits per example) of a checkpoint, computed
    in this process."""
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)],
                                                                    arg_overrides={"data": str(data)})
    model = models[0].eval()
    task.load_dataset(subset)
    dataset = task.dataset(subset)
    batch = dataset.collater([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        logits, _ = model(**batch["net_input"])
    loss = F.cross_entropy(logits.float(), batch["target"], reduction="sum").item() / len(dataset) / math.log(2)
    return 100.0 * (logits.argmax(-1) == batch["target"]).float().mean().item(), loss


def test_official_checkpoints_convert_and_run_in_fairseq(data_dirs, dictionaries, mt_bin, tmp_path, capsys):
    from fairseq.data import Dictionary

    aan_args = official_args("mega_lra_aan", data_dirs)
    vocabulary, _ = converter.classifier_vocabulary(convert_official_args(aan_args).args, dictionaries["text"])
    aan = save_official(tmp_path / "aan.pt", aan_args,
                        random_tensors(official_classifier_shapes(aan_args, len(vocabulary.official)), seed=1))
    sc_args = official_args("mega_sc_raw_big", data_dirs)
    speech = save_official(tmp_path / "sc.pt", sc_args, random_tensors(official_classifier_shapes(sc_args), seed=2))
    mt_args = mt_official_args(mt_bin)
    vocab = len(Dictionary.load(str(mt_bin / "dict.src.txt")))
    mt_state = random_tensors(official_mt_shapes(mt_args, vocab), seed=3)
    mt_state["decoder.output_projection.weight"] = mt_state["decoder.embed_tokens.weight"] = \
        mt_state["encoder.embed_tokens.weight"]
    mt = save_official(tmp_path / "mt.pt", mt_args, mt_state)

    converter.main([str(aan), str(tmp_path / "aan_ours.pt"), "--official-dict", str(dictionaries["text"])])
    out = capsys.readouterr().out
    assert "note: pair head: official [second, first] halves swapped" in out
    assert "(mega_lra_retrieval)" in out and "--lr-scheduler linear_decay -> polynomial_decay" in out
    converter.main([str(speech), str(tmp_path / "sc_ours.pt")])
    assert "(mega_sc_raw_big)" in capsys.readouterr().out
    converter.main([str(mt), str(tmp_path / "mt_ours.pt")])
    assert "(mega_wmt_en_de)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="pass --official-dict"):
        converter.main([str(aan), str(tmp_path / "again.pt")])

    common = ["--user-dir", USER_DIR, "--cpu", "--num-workers", "0", "--log-format", "simple"]
    jobs = [["validate", [str(data_dirs["aan"]), *common, "--path", str(tmp_path / "aan_ours.pt"), "--valid-subset",
                          "test", "--task", "mega_sequence_classification", "--batch-size", "64",
                          "--required-batch-size-multiple", "1", "--model-overrides",
                          repr({"data": str(data_dirs["aan"])})]],
            ["generate", [str(mt_bin), *common, "--path", str(tmp_path / "mt_ours.pt"), "--gen-subset", "test",
                          "--beam", "2", "--max-len-a", "0", "--max-len-b", "4", "--batch-size", "32"]]]
    done = run_jobs(jobs, tmp_path / "jobs", timeout=300, merged=False)
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "JOB OK 1" in done.stdout, log[-4000:]
    found = re.search(r"valid on 'test' subset \| loss ([\d.]+) .*\| accuracy ([\d.]+)", log)
    assert found, log[-4000:]
    accuracy, loss = accuracy_and_loss(tmp_path / "aan_ours.pt", data_dirs["aan"], "test")
    assert float(found.group(2)) == pytest.approx(accuracy, abs=0.05)
    assert float(found.group(1)) == pytest.approx(loss, abs=2e-3)
    hypotheses = re.findall(r"^H-\d+\t", log, flags=re.M)
    assert hypotheses and len(hypotheses) == len(re.findall(r"^S-\d+\t", log, flags=re.M))
