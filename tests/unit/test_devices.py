"""Every fairseq run of the tests states its device: the job driver and the runner of
tests/helpers/fairseq_jobs.py refuse one that does not, before anything runs. fairseq trains on CUDA
wherever CUDA is available unless told --cpu, so a CPU test that says nothing would run on a GPU
machine's GPU, where the attention backward is not bit-for-bit deterministic."""

import pytest
import torch

from helpers import ROOT, USER_DIR
from helpers.fairseq_jobs import checked, job_on, run, run_jobs

TRAIN = ["train", ["data", "--user-dir", USER_DIR, "--arch", "mega_lm_tiny"]]


def driver(tmp_path, jobs):
    done = run_jobs(jobs, tmp_path / "jobs", timeout=120, merged=False)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("jobs,message", [
    ([job_on("cpu", TRAIN), TRAIN], "job 1 (train) does not state its device"),
    ([["expect_error", *TRAIN]], "job 0 (train) does not state its device"),
    ([["hydra", str(ROOT / "configs" / "lm"), "demo", ["task.data=data"]]], "job 0 (hydra) does not state its device"),
    ([["cuda", TRAIN[0], [*TRAIN[1], "--cpu"]]], "job 0 (train) is declared a CUDA run but chooses the CPU"),
], ids=["train", "expect_error", "hydra", "cuda_with_cpu"])
def test_the_driver_refuses_a_job_that_does_not_choose_its_device(tmp_path, jobs, message):
    code, output = driver(tmp_path, jobs)
    assert code != 0 and "JOB" not in output and message in output  # refused before the first job ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machines without CUDA")
def test_a_cuda_job_needs_cuda():
    with pytest.raises(RuntimeError, match=r"job 0 \(train\) is a CUDA run and no CUDA device is available"):
        checked(0, job_on("cuda", TRAIN))


@pytest.mark.parametrize("cmd,env", [
    (["fairseq-train", "data", "--user-dir", USER_DIR], None),
    (["fairseq-hydra-train", "--config-dir", "configs/lm", "--config-name", "demo"], None),
    (["bash", ROOT / "scripts" / "eval_cls.sh", "checkpoint.pt", "data"], {"AVERAGE": "2"}),
])
def test_the_runner_refuses_a_fairseq_command_that_does_not_choose_its_device(cmd, env):
    with pytest.raises(ValueError, match="does not state its device"):
        run(cmd, env=env)
