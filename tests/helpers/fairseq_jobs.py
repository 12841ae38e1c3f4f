"""Runs several fairseq jobs in one Python process (the import of torch and fairseq is paid once).

    python tests/fairseq_driver.py JOBS.json

Each job is [command, [arguments]] for the command preprocess, train, validate, generate, eval_lm
or interactive (the real fairseq entry points, fairseq_cli.<command>.cli_main), or ["hydra",
config_dir, config_name, [overrides]] (a recipe composed the way fairseq-hydra-train composes it
and passed to fairseq_cli.train.main). Prints "JOB OK <n>" after each job and stops at the first
failure, except for jobs ["expect_error", command, [arguments]], which print
"JOB ERROR <n>: <exception type>: <message>" (or "JOB OK <n>" when nothing failed) and go on.

Every job states its device (check_device): --cpu in its arguments (common.cpu=true among the
Hydra overrides), or it is a CUDA job, ["cuda", command, ...] (job_on builds either). A job that
states neither is refused before anything runs.
"""

import json
import sys
import time

COMMANDS = ("train", "validate", "generate", "eval_lm", "interactive")
DEVICES = ("cpu", "cuda")


def chooses_cpu(words, env=None) -> bool:
    """Whether fairseq arguments or Hydra overrides (``words``), or the environment of a script of
    scripts/ (CPU=1), put fairseq on the CPU."""
    return (any(word == "--cpu" or word.lstrip("+") == "common.cpu=true" for word in map(str, words))
            or (env or {}).get("CPU") == "1")


def check_device(what: str, words, device: str, env=None):
    """Refuses a fairseq run that does not choose the device its test states. fairseq runs on CUDA
    wherever CUDA is available unless told to use the CPU: a CPU test that does not say so would
    run on a GPU machine's GPU, where the attention backward is not bit-for-bit deterministic. A CPU
    run passes --cpu (common.cpu=true to Hydra, CPU=1 to the scripts); a CUDA run passes none of
    them, is declared a CUDA run by its test, and needs a CUDA device."""
    if device not in DEVICES:
        raise ValueError(f"{what}: unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cpu" and not chooses_cpu(words, env):
        raise ValueError(f"{what} does not state its device: pass --cpu (common.cpu=true to Hydra, CPU=1 to "
                         f"the scripts), or declare it a CUDA run")
    if device == "cuda":
        if chooses_cpu(words, env):
            raise ValueError(f"{what} is declared a CUDA run but chooses the CPU")
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(f"{what} is a CUDA run and no CUDA device is available")


def job_on(device: str, job):
    """A train/validate/... job on DEVICE: with --cpu, or declared a CUDA job."""
    return [job[0], [*job[1], "--cpu"]] if device == "cpu" else ["cuda", *job]


def hydra_job(config_dir: str, config_name: str, overrides):
    from fairseq import distributed_utils
    from fairseq.dataclass.initialize import add_defaults, hydra_init
    from fairseq_cli.train import main as train_main
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    hydra_init(config_name)
    with initialize_config_dir(config_dir=config_dir, version_base="1.1"):
        cfg = compose(config_name, overrides=list(overrides))
    add_defaults(cfg)
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    OmegaConf.set_struct(cfg, True)
    distributed_utils.call_main(cfg, train_main)


def run_job(job):
    import importlib

    from fairseq import checkpoint_utils
    from fairseq.logging import progress_bar

    if hasattr(checkpoint_utils.save_checkpoint, "best"):
        del checkpoint_utils.save_checkpoint.best  # the best score is kept across runs otherwise
    # fairseq keeps one TensorBoard writer per tag ("train", "valid") for the whole process: the
    # next run would write into the previous run's --tensorboard-logdir
    progress_bar._close_writers()
    progress_bar._tensorboard_writers.clear()
    if job[0] == "hydra":
        hydra_job(*job[1:])
    elif job[0] in COMMANDS or job[0] == "preprocess":  # preprocessing has no device
        sys.argv = [f"fairseq-{job[0].replace('_', '-')}", *job[1]]
        importlib.import_module(f"fairseq_cli.{job[0]}").cli_main()
    else:
        raise ValueError(f"unknown job {job[0]!r}")


def checked(number: int, job):
    """The job to run (inside "expect_error" too, its CUDA declaration taken off) once its
    arguments choose the device it states (check_device): CUDA for ["cuda", ...], else the CPU."""
    expect_error = job[0] == "expect_error"
    job = job[1:] if expect_error else job
    device = "cuda" if job[0] == "cuda" else "cpu"
    job = job[1:] if device == "cuda" else job
    if job[0] in COMMANDS or job[0] == "hydra":
        check_device(f"job {number} ({job[0]})", job[-1], device)
    return ["expect_error", *job] if expect_error else job


def main():
    jobs = [checked(number, job) for number, job in enumerate(json.loads(open(sys.argv[1]).read()))]
    for number, job in enumerate(jobs):
        started = time.time()
        if job[0] == "expect_error":
            try:
                run_job(job[1:])
            except BaseException as error:  # noqa: BLE001  SystemExit too: the message is what is checked
                message = " ".join(str(error).split())
                print(f"JOB ERROR {number}: {type(error).__name__}: {message}", flush=True)
                continue
        else:
            run_job(job)
        print(f"JOB OK {number}", flush=True)
        print(f"job {number} ({job[0]}) took {time.time() - started:.1f}s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
