"""Running fairseq in the tests: a command or a script of scripts/ (``run``, ``run_script``),
fairseq-preprocess in the test process (``preprocess``), or several fairseq jobs in one Python
process, the import of torch and fairseq paid once: the job driver, which is this file run as a
script (``Driver``, ``run_jobs``, ``driver_outputs``). ``run`` and the driver refuse a fairseq run
that does not state its device (``check_device``).

    python tests/helpers/fairseq_jobs.py JOBS.json

Each job is [command, [arguments]] for the command preprocess, train, validate, generate, eval_lm
or interactive (the real fairseq entry points, fairseq_cli.<command>.cli_main), or ["hydra",
config_dir, config_name, [overrides]] (a recipe composed the way fairseq-hydra-train composes it
and passed to fairseq_cli.train.main). Prints "JOB OK <n>" after each job and stops at the first
failure, except for jobs ["expect_error", command, [arguments]], which print
"JOB ERROR <n>: <exception type>: <message>" (or "JOB OK <n>" when nothing failed) and go on.
``JobsRun.reports`` reads the output of each job and its status line back.

Every job states its device (check_device): --cpu in its arguments (common.cpu=true among the
Hydra overrides), or it is a CUDA job, ["cuda", command, ...] (job_on builds either). A job that
states neither is refused before anything runs.

The driver imports nothing but the standard library before its first job: this module must stay
importable as a script, outside the helpers package.
"""

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

COMMANDS = ("train", "validate", "generate", "eval_lm", "interactive")
DEVICES = ("cpu", "cuda")
FAIRSEQ_CLIS = {f"fairseq-{command.replace('_', '-')}" for command in COMMANDS} | {"fairseq-hydra-train"}
FAIRSEQ_SCRIPTS = {"train.sh", "eval_lm.sh", "eval_cls.sh", "eval_bleu.sh"}  # of scripts/; CPU=1: on the CPU
STATUS = re.compile(r"^(JOB (?:OK|ERROR) \d+\b.*)$", re.M)  # the driver's line after each job


# ---------------------------------------------------------------- devices


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


# ---------------------------------------------------------------- the tests' side


def fairseq_launched(cmd):
    """The fairseq command, or the script of scripts/ that runs one, that cmd launches; else None."""
    for word in map(Path, map(str, cmd)):
        if word.name in FAIRSEQ_CLIS or (word.name in FAIRSEQ_SCRIPTS and word.parent.name == "scripts"):
            return word.name
    return None


def run(cmd, cwd=None, check=True, timeout=600, env=None, device="cpu"):
    """Run a CLI; return (returncode, combined output). Fails the test on error when check. A
    command that runs fairseq must choose ``device`` by its arguments or ``env`` (check_device)."""
    launched = fairseq_launched(cmd)
    if launched:
        check_device(launched, cmd, device, env)
    full_env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="2", **(env or {}))
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=full_env)
    out = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{out[-6000:]}")
    return proc.returncode, out


def run_script(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    """Runs a command (a script of scripts/, with bash) as the recipe tests run them: on one thread and
    one worker (WORKERS=1), launched locally (without the SLURM_JOB_ID of a Slurm allocation), with
    ENV added; stdout and stderr apart, for the tests that read a script's last line."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "WORKERS": "1"}
    full_env.pop("SLURM_JOB_ID", None)
    full_env.update(env or {})
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=full_env, timeout=timeout)


def check(result: subprocess.CompletedProcess) -> str:
    """The output (stdout, then stderr) of a run that succeeded; fails the test otherwise."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout + result.stderr


def preprocess(*args):
    """fairseq-preprocess ARGS in this process (its import is paid once; preprocessing has no device)."""
    from fairseq import options
    from fairseq_cli import preprocess as fairseq_preprocess

    fairseq_preprocess.main(options.get_preprocessing_parser().parse_args([str(a) for a in args]))


@dataclass
class JobsRun:
    """What a driver process printed: stdout (with stderr interleaved when merged) and stderr."""
    returncode: int
    stdout: str
    stderr: str = ""

    def reports(self):
        """[(output, status line)] of each job that reported, in order: job n's output is what was
        printed after job n - 1's status line."""
        parts = STATUS.split(self.stdout)
        return list(zip(parts[0:-1:2], parts[1::2]))

    def rest(self) -> str:
        """What was printed after the last status line (where a driver that stopped, stopped)."""
        return STATUS.split(self.stdout)[-1]

    def status(self, number: int):
        """Job NUMBER's status line ("JOB OK n" or "JOB ERROR n: type: message"), or None."""
        found = re.search(rf"^JOB (?:OK|ERROR) {number}\b.*$", self.stdout, re.M)
        return found.group(0) if found else None


class Driver:
    """A driver process running jobs, its output in files beside its jobs file."""

    def __init__(self, jobs, path, threads=2, env=None, merged=True):
        """Starts the driver on JOBS, written to PATH.json, on THREADS threads with ENV added to its
        environment. Its output goes to PATH.log (stdout and stderr interleaved as printed), or to
        PATH.out and PATH.err when not merged (fairseq logs to stderr, the driver and fairseq-generate
        print to stdout)."""
        path = Path(path)
        self.jobs, self.merged = path.with_suffix(".json"), merged
        self.out, self.err = (path.with_suffix(".log"), None) if merged else (path.with_suffix(".out"),
                                                                            path.with_suffix(".err"))
        self.jobs.write_text(json.dumps(jobs, default=str))
        with open(self.out, "w") as out, open(self.err or os.devnull, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, Path(__file__).resolve(), self.jobs], stdout=out,
                stderr=subprocess.STDOUT if merged else err,
                env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(threads), **(env or {})})

    def wait(self, timeout=600) -> JobsRun:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        return JobsRun(code, self.out.read_text(), "" if self.merged else self.err.read_text())


def run_jobs(jobs, path, timeout=600, **options) -> JobsRun:
    """Runs JOBS in one driver process (Driver's options) and waits for it."""
    return Driver(jobs, path, **options).wait(timeout)


def driver_outputs(jobs, folder):
    """The output of each job, ending in its status line, run in one driver process."""
    done = run_jobs(jobs, Path(folder) / "jobs")
    assert done.returncode == 0, done.stdout[-6000:]
    return [output + status for output, status in done.reports()]


# ---------------------------------------------------------------- the driver's side


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
