# Set-up on a fresh machine: `make demo` and `make test` install what they need first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .installed
# the torch to install when none is installed within setup.py's range (an installed one is kept, a CUDA build above
# all: scripts/torch_requirement.py); `make install TORCH=SPEC` installs SPEC, `make install TORCH=` keeps any torch
TORCH ?= torch==2.13.0
# test processes (pytest-xdist; each test file stays in one process)
TEST_WORKERS ?= 2
# extra arguments of the demos (python -m demo), e.g. make demo DEMO_ARGS="--updates 50 --out /tmp/demo"
DEMO_ARGS ?=

# where `make gpu-check` writes its log; CPU=1 makes it a quick dry run on CPU
GPU_CHECK_LOG ?= gpu_check.log

.PHONY: install demo demo-mt demo-lra demo-speech test test-fast bench gpu-check clean

# The stamp skips the downloads; the editable install is redone when mega_fairseq does not
# import from this checkout (for example after installing another clone).
install: $(STAMP)
	@(cd / && $(PYTHON) -c "import mega_fairseq, os, sys; \
		sys.exit(os.path.dirname(os.path.realpath(mega_fairseq.__file__)) != os.path.realpath('$(CURDIR)/mega_fairseq'))" \
		2>/dev/null) || $(PIP) install --no-build-isolation --no-deps -e .

# torch first (an installed torch within setup.py's range is kept, e.g. a CUDA build; else the pinned CPU build:
# an unpinned torch pulls a multi-GB CUDA build), then fairseq built against it without build isolation, then
# fairseq's runtime dependencies.
# numpy < 2: fairseq 0.12 still calls np.compat (gone in numpy 2). transformers < 4.41 ships
# the port of the official Mega code that the parity tests and the benchmark compare against.
# espeak-ng (a Debian package, installed when running as root with apt-get) speaks the words of
# the speech demo.
$(STAMP): setup.py Makefile
	requirement="$$($(PYTHON) scripts/torch_requirement.py '$(TORCH)' $(if $(filter file,$(origin TORCH)),,--explicit))" \
		&& $(PIP) install $$requirement "numpy<2" cython setuptools wheel
	MAX_JOBS=2 $(PIP) install --no-build-isolation --no-deps fairseq-fixed==0.12.3.1
	$(PIP) install hydra-core==1.3.2 omegaconf==2.3.0 cffi regex sacrebleu tqdm bitarray scikit-learn \
		packaging sentencepiece sacremoses tensorboard tensorboardX soundfile scipy pillow pytest pytest-xdist matplotlib \
		"numpy<2" "transformers<4.41"
	$(PIP) install --no-build-isolation --no-deps -e .
	@command -v espeak-ng >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null) || \
		echo "note: espeak-ng is not installed; make demo-speech needs it (apt-get install espeak-ng)"; }
	touch $(STAMP)

demo: install
	$(PYTHON) -m demo $(DEMO_ARGS)

demo-mt: install
	$(PYTHON) -m demo --task mt $(DEMO_ARGS)

demo-lra: install
	$(PYTHON) -m demo --task lra $(DEMO_ARGS)

demo-speech: install
	$(PYTHON) -m demo --task speech $(DEMO_ARGS)

# The whole suite: tests/unit and tests/cli (the fairseq commands, scripts and processes of the package).
test: install
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# The unit tests alone (tests/unit: the layers, models, tasks, readers and scripts' functions in the test
# processes; no fairseq command, script or process of the package): about 100 s of CPU time, under 2
# minutes on 2 CPU cores. One thread per test process: their small tensors gain nothing from more threads,
# which would oversubscribe the cores.
test-fast: install
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests/unit

# On the GPU when torch sees CUDA, else on CPU; extra flags in BENCH_ARGS, e.g.
# make bench BENCH_ARGS="--device cpu --json bench.json --plot bench.png"
bench: install
	$(PYTHON) -m benchmarks $(BENCH_ARGS)

# Validates a GPU machine in at most 10 minutes: the CUDA tests, the SDPA backend of every preset's shapes, fused
# attention against float64, training in every precision, decoding, the benchmark; one log (benchmarks/gpu_check.py)
gpu-check: install
	$(PYTHON) -m benchmarks.gpu_check --log $(GPU_CHECK_LOG) $(if $(filter 1,$(CPU)),--cpu)

clean:
	rm -rf $(STAMP) data/demo data/demo_mt data/demo_lra data/demo_speech build *.egg-info
