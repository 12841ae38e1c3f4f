from setuptools import find_packages, setup

setup(
    name="mega_fairseq",
    version="0.1.0",
    description="Mega (Moving Average Equipped Gated Attention) as a fairseq plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mega_fairseq", "mega_fairseq.*"]),
    python_requires=">=3.9",
    install_requires=[
        # a range, so that an existing (e.g. CUDA) build of torch is kept; from 2.6 torch loads
        # weights-only by default and has the safe-globals API the plugin's loading uses
        # (mega_fairseq/checkpoint_loading.py, MIN_TORCH: the plugin refuses an older torch)
        "torch>=2.6,<3",
        "numpy<2",  # fairseq 0.12 uses np.compat
        # fairseq 0.12 for current Python; build it against the installed torch (see Makefile)
        "fairseq-fixed>=0.12.3",
        "hydra-core==1.3.2",
        "omegaconf==2.3.0",
        "sacrebleu",
        "sentencepiece",
        "tensorboardX",
    ],
    extras_require={"test": ["pytest"], "bench": ["matplotlib"]},
)
