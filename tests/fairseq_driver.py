"""Runs several fairseq jobs in one Python process (the import of torch and fairseq is paid once).

    python tests/fairseq_driver.py JOBS.json

Each job is ["train", [fairseq-train arguments]], ["validate", [fairseq-validate arguments]] or
["hydra", config_dir, config_name, [overrides]]: the real fairseq entry points (fairseq_cli.train
and fairseq_cli.validate, or a recipe composed the way fairseq-hydra-train composes it and
passed to fairseq_cli.train.main). Prints "JOB OK <n>" after each job; stops at the first failure.
"""

import json
import sys


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


def main():
    from fairseq import checkpoint_utils
    from fairseq_cli import train, validate

    jobs = json.loads(open(sys.argv[1]).read())
    for number, job in enumerate(jobs):
        if hasattr(checkpoint_utils.save_checkpoint, "best"):
            del checkpoint_utils.save_checkpoint.best  # the best score is kept across runs otherwise
        if job[0] == "train":
            sys.argv = ["fairseq-train", *job[1]]
            train.cli_main()
        elif job[0] == "validate":
            sys.argv = ["fairseq-validate", *job[1]]
            validate.cli_main()
        elif job[0] == "hydra":
            hydra_job(*job[1:])
        else:
            raise ValueError(f"unknown job {job[0]!r}")
        print(f"JOB OK {number}", flush=True)


if __name__ == "__main__":
    main()
