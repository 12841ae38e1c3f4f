"""Runs several fairseq jobs in one Python process (the import of torch and fairseq is paid once).

    python tests/fairseq_driver.py JOBS.json

Each job is [command, [arguments]] for the command preprocess, train, validate, generate, eval_lm
or interactive (the real fairseq entry points, fairseq_cli.<command>.cli_main), or ["hydra",
config_dir, config_name, [overrides]] (a recipe composed the way fairseq-hydra-train composes it
and passed to fairseq_cli.train.main). Prints "JOB OK <n>" after each job and stops at the first
failure, except for jobs ["expect_error", command, [arguments]], which print
"JOB ERROR <n>: <exception type>: <message>" (or "JOB OK <n>" when nothing failed) and go on.
"""

import json
import sys
import time


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
    elif job[0] in ("preprocess", "train", "validate", "generate", "eval_lm", "interactive"):
        sys.argv = [f"fairseq-{job[0].replace('_', '-')}", *job[1]]
        importlib.import_module(f"fairseq_cli.{job[0]}").cli_main()
    else:
        raise ValueError(f"unknown job {job[0]!r}")


def main():
    jobs = json.loads(open(sys.argv[1]).read())
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
