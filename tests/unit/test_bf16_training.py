"""Training steps under bfloat16 autocast on CPU, for every family: losses and gradients stay finite
and close to the same steps in float32 (same initial weights, same batches, Adam), and the EMA's
FFT convolution runs in float32 under autocast. The speech models are the pixel models' code (a
real-valued embedding, batch norm) on 16000 samples: too slow for this test under bfloat16 on CPU.

The tolerances are bfloat16's: 8 bits of mantissa give a relative rounding error of 2^-9 ~ 0.2% per
operation; a few layers of matmuls, normalisations and softmax could accumulate to about 1% in the loss
and a few percent in the gradients; measured, these models stay within 0.08% (losses) and 0.7%
(gradients) of float32, and the bounds below leave a factor of four or more."""

import copy

import pytest
import torch

from helpers import USER_DIR
from helpers.tiny import write_listops, write_pathfinder
import mega_fairseq.models  # noqa: F401  (registers the plugin: fairseq skips --user-dir once mega_fairseq is imported)
from mega_fairseq.modules import ema

STEPS = 4
LOSS_TOLERANCE = 5e-3  # relative, per step (measured: at most 8e-4)
GRADIENT_TOLERANCE = 3e-2  # relative, in norm over all parameters, first step (measured: at most 7e-3)

CLASSIFIER = ["--task", "mega_sequence_classification", "--criterion", "sentence_prediction"]


def family_args(family, root, lm_data, mt_data):
    if family == "lm":
        return [str(lm_data), "--task", "mega_language_modeling", "--tokens-per-sample", "32", "--arch", "mega_lm_tiny"]
    if family == "mt":
        return [str(mt_data), "--task", "translation", "--source-lang", "src", "--target-lang", "tgt", "--arch",
                "mega_mt_tiny"]
    if family == "tokens":
        return [str(write_listops(root / "listops")), *CLASSIFIER, "--num-classes", "10", "--max-positions", "100",
                "--arch", "mega_classifier_tiny"]
    if family == "pixels":  # real-valued input and batch norm, as the image and speech presets
        return [str(write_pathfinder(root / "pathfinder", size=16)), *CLASSIFIER, "--num-classes", "2",
                "--input-type", "pixels", "--max-positions", "256", "--arch", "mega_classifier_tiny",
                "--normalization-type", "batchnorm", "--encoder-chunk-size", "100"]
    raise ValueError(family)


def setup(args):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, [
        *args, "--user-dir", USER_DIR, "--dropout", "0", "--seed", "3", "--cpu", "--optimizer", "adam"]))
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    torch.manual_seed(3)
    model, criterion = task.build_model(cfg.model), task.build_criterion(cfg.criterion)
    iterator = task.get_batch_iterator(task.dataset("train"), max_sentences=4, seed=3,
                                       required_batch_size_multiple=1).next_epoch_itr(shuffle=False)
    return model, criterion, [next(iterator) for _ in range(STEPS)]


def train_steps(model, criterion, batches, dtype):
    """Losses per step and the first step's gradients."""
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses, first_gradients = [], None
    for sample in batches:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            loss, sample_size, _ = criterion(model, sample)
        (loss / sample_size).backward()
        losses.append(float(loss.detach()) / sample_size)
        if first_gradients is None:
            first_gradients = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
        optimizer.step()
    return losses, first_gradients


@pytest.mark.parametrize("family", ["lm", "mt", "tokens", "pixels"])
def test_bf16_training_steps_close_to_float32(family, tmp_path, lm_data, mt_data, monkeypatch):
    model, criterion, batches = setup(family_args(family, tmp_path, lm_data, mt_data))
    fp32_losses, fp32_gradients = train_steps(model, criterion, batches, None)

    convolved = []
    fft_convolution = ema.fft_convolution

    def recording(x, *kernels):
        convolved.append((x.dtype, *(k.dtype for k in kernels if k is not None)))
        return fft_convolution(x, *kernels)

    monkeypatch.setattr(ema, "fft_convolution", recording)
    bf16_losses, bf16_gradients = train_steps(model, criterion, batches, torch.bfloat16)

    assert convolved and all(dtype == torch.float32 for dtypes in convolved for dtype in dtypes), set(convolved)
    assert all(torch.isfinite(torch.tensor(bf16_losses))) and torch.isfinite(bf16_gradients).all()
    for step, (low, full) in enumerate(zip(bf16_losses, fp32_losses)):
        assert abs(low - full) <= LOSS_TOLERANCE * abs(full), (step, low, full)
    error = float((bf16_gradients - fp32_gradients).norm() / fp32_gradients.norm())
    assert error <= GRADIENT_TOLERANCE, error
    # and bfloat16 did round: the comparison is not between two float32 runs
    assert bf16_losses != fp32_losses
