"""scripts/plot_ema.py and scripts/plot_curves.py on real runs: a tiny LM (causal EMA) and a tiny
ListOps classifier (bidirectional EMA), each trained a few updates with --tensorboard-logdir in one
fairseq process. The scripts run in this process (their main), as the command line would call them."""

import math
import random
import re
import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import USER_DIR, script
from helpers.fairseq_jobs import Driver
from helpers.tiny import write_listops

COMMON = ["--optimizer", "adam", "--lr", "1e-3", "--cpu", "--num-workers", "0", "--no-progress-bar",
          "--log-format", "simple", "--log-interval", "1", "--seed", "1", "--no-epoch-checkpoints"]
LM_LAYER = "decoder.stack.layers.0.mega_layer.move"


def write_raw_lm_corpus(folder):
    """Text read with --dataset-impl raw (one sentence a line) and its dictionary: no fairseq-preprocess run."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)]
    counts = Counter()
    folder.mkdir(parents=True)
    for split, lines in (("train", 200), ("valid", 30)):
        text = [" ".join(rng.choices(words, k=rng.randint(5, 20))) for _ in range(lines)]
        counts.update(word for line in text for word in line.split())
        (folder / split).write_text("\n".join(text) + "\n")
    (folder / "dict.txt").write_text("".join(f"{word} {n}\n" for word, n in counts.most_common()))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("plot_runs")
    lm_data = write_raw_lm_corpus(root / "lm_data")
    listops = write_listops(root / "listops", counts=(24, 8, 8), lengths=(10, 40))
    jobs = [
        ["train", [str(lm_data), "--user-dir", USER_DIR, "--task", "mega_language_modeling", "--dataset-impl", "raw",
                   "--arch", "mega_lm_tiny", "--tokens-per-sample", "32", "--max-target-positions", "128",
                   "--max-tokens", "256", "--max-update", "4", "--validate-interval-updates", "2",
                   "--save-dir", str(root / "lm"), "--tensorboard-logdir", str(root / "tb" / "mega_lm"), *COMMON]],
        ["train", [str(listops), "--user-dir", USER_DIR, "--task", "mega_sequence_classification",
                   "--input-type", "tokens", "--num-classes", "10", "--max-positions", "2000",
                   "--arch", "mega_classifier_tiny", "--criterion", "sentence_prediction", "--batch-size", "4",
                   "--required-batch-size-multiple", "1", "--max-update", "3", "--validate-interval-updates", "2",
                   "--save-dir", str(root / "cls"), "--tensorboard-logdir", str(root / "tb" / "mega_classifier"),
                   *COMMON]],
    ]
    driver = Driver(jobs, root / "jobs")
    import mega_fairseq  # noqa: F401  (plot_ema.py imports it: meanwhile, the runs train)

    done = driver.wait()
    assert done.returncode == 0, done.stdout[-6000:]
    return root


def call(name, argv, capsys):
    """Runs scripts/<name>.py's main; returns (exit code, stdout, stderr)."""
    code = 0
    try:
        script(name).main([str(a) for a in argv])
    except SystemExit as error:
        code = error.code
    out = capsys.readouterr()
    return code, out.out, out.err


def check_figures(prefix):
    """PREFIX.png is an image PIL accepts, PREFIX.svg an XML document with an <svg> root; nothing else was written."""
    png, svg = prefix.with_name(prefix.name + ".png"), prefix.with_name(prefix.name + ".svg")
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 0 and image.size[1] > 0
    assert ET.parse(svg).getroot().tag.endswith("svg")
    assert sorted(p.name for p in prefix.parent.iterdir()) == [png.name, svg.name]


def table_rows(out):
    """{(layer, direction): (median q, median window, max window)} from plot_ema's table."""
    rows = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 5 and fields[1] in ("forward", "backward"):
            rows[fields[0], fields[1]] = (float(fields[2]), fields[3], fields[4])
    return rows


def window(q, threshold=0.01):
    """One exponential q^t falls below threshold after t > ln(threshold) / ln(q)."""
    return math.floor(math.log(threshold) / math.log(q)) + 1


def test_ema_window_of_a_known_decay(runs, tmp_path, capsys):
    """alpha, delta set so that q is 0.9 (channel 0: 0.99) and one expansion dim carries the kernel:
    each channel's kernel is one exponential, whose window is known in closed form."""
    state = torch.load(runs / "lm" / "checkpoint_last.pt", weights_only=True)
    model = state["model"]
    rows, ndim = model[f"{LM_LAYER}.alpha"].shape
    q = torch.full((rows, 1), 0.9)
    q[0] = 0.99
    model[f"{LM_LAYER}.alpha"] = torch.logit(1 - q).expand(rows, ndim).clone()  # alpha * delta = 1 - q
    model[f"{LM_LAYER}.delta"] = torch.full((rows, ndim), 30.0)  # sigmoid(30) = 1 in float32
    model[f"{LM_LAYER}.eta"] = torch.zeros(rows, ndim)
    model[f"{LM_LAYER}.eta"][:, 0] = 1.0
    torch.save(state, tmp_path / "known.pt")

    code, out, err = call("plot_ema", [tmp_path / "known.pt", "--out", tmp_path / "figures" / "known"], capsys)
    assert code == 0, err
    rows_out = table_rows(out)
    assert set(rows_out) == {("decoder.layers.0", "forward"), ("decoder.layers.1", "forward")}, out
    assert (window(0.9), window(0.99)) == (44, 459)
    assert rows_out["decoder.layers.0", "forward"] == (0.9, "44", "459"), out
    check_figures(tmp_path / "figures" / "known")

    # a window longer than the kernel taps computed is reported as at least that many
    code, out, err = call("plot_ema", [tmp_path / "known.pt", "--max-length", "40", "--formats", "png",
                                       "--out", tmp_path / "short" / "known"], capsys)
    assert code == 0, err
    assert table_rows(out)["decoder.layers.0", "forward"][1:] == (">=40", ">=40"), out


def reference_windows(kernel_rows, length, threshold=0.01):
    """Per channel, float64 numpy from the raw tensors: K[t] = sum_j sigmoid(alpha) beta eta / sqrt(N) q^t."""
    alpha, delta, beta, eta = (kernel_rows[p].double().numpy() for p in ("alpha", "delta", "beta", "eta"))
    a, d = 1 / (1 + np.exp(-alpha)), 1 / (1 + np.exp(-delta))
    q = 1 - a * d
    weight = a * beta * eta / math.sqrt(alpha.shape[1])
    kernel = np.abs(np.einsum("dn,dnt->dt", weight, q[..., None] ** np.arange(length)))
    above = kernel >= threshold * kernel.max(-1, keepdims=True)
    windows = length - np.argmax(above[:, ::-1], axis=-1)
    return np.median(q), np.median(windows), windows.max()


def test_bidirectional_ema_windows_match_the_kernel(runs, tmp_path, capsys):
    code, out, err = call("plot_ema", [runs / "cls" / "checkpoint_last.pt", "--max-length", "512",
                                       "--out", tmp_path / "figures" / "cls"], capsys)
    assert code == 0, err
    rows_out = table_rows(out)
    assert set(rows_out) == {(f"encoder.layers.{i}", d) for i in range(2) for d in ("forward", "backward")}, out
    model = torch.load(runs / "cls" / "checkpoint_last.pt", weights_only=True)["model"]
    prefix = "encoder.stack.layers.1.mega_layer.move"
    dim = model[f"{prefix}.omega"].numel()
    for direction, rows in (("forward", slice(0, dim)), ("backward", slice(dim, 2 * dim))):
        params = {p: model[f"{prefix}.{p}"][rows] for p in ("alpha", "delta", "beta", "eta")}
        median_q, median, largest = reference_windows(params, 512)
        assert rows_out["encoder.layers.1", direction] == (round(median_q, 4), f"{median:g}", f"{largest:g}"), out
    check_figures(tmp_path / "figures" / "cls")


def test_ema_errors(runs, tmp_path, capsys):
    code, _, err = call("plot_ema", [tmp_path / "missing.pt", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "no such checkpoint" in err and "missing.pt" in err
    torch.save({"model": {"linear.weight": torch.ones(2, 2)}}, tmp_path / "plain.pt")
    code, _, err = call("plot_ema", [tmp_path / "plain.pt", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "plain.pt: no EMA parameters" in err
    assert not list(tmp_path.glob("x*"))


def test_curves_of_two_runs(runs, tmp_path, capsys):
    logdirs = [runs / "tb" / "mega_lm", runs / "tb" / "mega_classifier"]
    code, out, err = call("plot_curves", [*logdirs, "--tags", "train_inner/loss,valid/loss",
                                          "--out", tmp_path / "figures" / "curves"], capsys)
    assert code == 0, err
    points = dict(re.findall(r"^(mega_\w+): train_inner/loss (\d+) points", out, re.M))
    assert points == {"mega_lm": "4", "mega_classifier": "3"}, out
    assert re.search(r"^mega_lm: .*valid/loss 2 points", out, re.M), out
    check_figures(tmp_path / "figures" / "curves")


def test_curves_errors_name_the_folder(runs, tmp_path, capsys):
    empty = tmp_path / "not_a_logdir"
    empty.mkdir()
    code, _, err = call("plot_curves", [runs / "tb" / "mega_lm", empty, "--out", tmp_path / "x"], capsys)
    assert code == 2 and f"{empty}: no TensorBoard event files" in err, err
    code, _, err = call("plot_curves", [runs / "tb" / "mega_lm", "--tags", "valid/accuracy",
                                        "--out", tmp_path / "x"], capsys)
    assert code == 2 and f"{runs / 'tb' / 'mega_lm' / 'valid'}: no scalar 'accuracy'" in err, err
    code, _, err = call("plot_curves", [tmp_path / "missing", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "no such folder" in err and "missing" in err
    assert not list(tmp_path.glob("x*"))


def write_events(logdir, values):
    """One run's valid/loss at updates 100, 200, ... as fairseq writes it (tensorboardX)."""
    from tensorboardX import SummaryWriter

    with SummaryWriter(str(logdir / "valid")) as writer:
        for step, value in enumerate(values, 1):
            writer.add_scalar("loss", value, 100 * step)


def test_curves_on_a_log_axis(tmp_path, capsys, monkeypatch):
    write_events(tmp_path / "tb" / "mega", [4.0, 1.0, 0.1])
    write_events(tmp_path / "tb" / "transformer", [2.0, 0.5, 0.2])
    module = script("plot_curves")
    scales = []
    save = module.save_figure
    monkeypatch.setattr(module, "save_figure",
                        lambda fig, *a: scales.extend(ax.get_yscale() for ax in fig.axes) or save(fig, *a))
    for flags, scale in (([], "linear"), (["--log-y"], "log")):
        scales.clear()
        module.main([str(tmp_path / "tb" / "mega"), str(tmp_path / "tb" / "transformer"), "--tags", "valid/loss",
                     "--out", str(tmp_path / scale / "curves"), *flags])
        assert scales == [scale], scales
        check_figures(tmp_path / scale / "curves")
    assert "mega: valid/loss 3 points, last 0.1 at update 300" in capsys.readouterr().out

    write_events(tmp_path / "tb" / "zero", [1.0, 0.0])
    code, _, err = call("plot_curves", [tmp_path / "tb" / "zero", "--tags", "valid/loss", "--log-y",
                                        "--out", tmp_path / "x"], capsys)
    assert code == 2 and "--log-y: zero valid/loss has values <= 0" in err, err
    assert not list(tmp_path.glob("x*"))
