# Four environments: .venv (latest gymnasium / SB3), .venv-compat (imitation 1.0.1 with
# gymnasium 0.29.1 / SB3 2.2.1), .venv-sims (the real simulators, make test-sims) and
# .venv-sims-jax (MuJoCo Playground and Brax, make test-sims-jax). TORCH picks the torch
# build; the default names a CPU build where the machine's pip finds one (override e.g.
# TORCH=torch for your own CUDA).
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
COMPAT := .venv-compat
SIMS := .venv-sims
SIMS_JAX := .venv-sims-jax
PY := $(VENV)/bin/python
CPY := $(COMPAT)/bin/python
SPY := $(SIMS)/bin/python
JPY := $(SIMS_JAX)/bin/python
PYTEST_ARGS ?=

.PHONY: test lint typecheck test-main test-compat test-sims test-sims-jax test-lerobot test-robomimic demo eval docs bench bench-quick bench-io bench-export bench-export-quick bench-maniskill bench-maniskill-quick bench-tensor gpu-wheels gpu-check clean

test: lint typecheck test-main test-compat

$(VENV)/.ok: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,lint,envpool,minari,robomimic]"
	touch $@

$(COMPAT)/.ok: pyproject.toml
	$(PYTHON) -m venv $(COMPAT)
	$(CPY) -m pip install -q --upgrade pip
	$(CPY) -m pip install -q "$(TORCH)"
	$(CPY) -m pip install -q -e ".[test,imitation]" "gymnasium==0.29.1" "stable-baselines3==2.2.1"
	touch $@

# The real simulators (ManiSkill3 and mjlab on their CPU backends, torchrl 0.14):
# tests/sims/requirements.txt lists them; install_vulkan.sh brings the Vulkan driver ManiSkill needs where the machine allows.
$(SIMS)/.ok: pyproject.toml tests/sims/requirements.txt
	bash tests/sims/install_vulkan.sh
	$(PYTHON) -m venv $(SIMS)
	$(SPY) -m pip install -q --upgrade pip
	$(SPY) -m pip install -q "$(TORCH)"
	$(SPY) -m pip install -q -r tests/sims/requirements.txt -e ".[test,maniskill]" "$(TORCH)"
	touch $@

# Each of these venvs also runs the docs' examples (tests/test_docs_examples.py): the blocks
# that need its packages (DOCS_MUST_RUN) must run there, the others skip or run as in make test.
test-sims: $(SIMS)/.ok
	DOCS_MUST_RUN="mani-skill torchrl" $(SPY) -m pytest -p no:xdist -q tests/sims tests/test_docs_examples.py \
		$(PYTEST_ARGS)

# Recording ManiSkill trajectory files, RecordEpisode against torchbuf and the env alone, on a real
# PickCube-v1 (CPU backend): docs/maniskill_benchmarks.md. Each run then reads torchbuf's file back
# with ManiSkill's reader (a check, not a timing); both skip, saying why, where ManiSkill has no Vulkan device.
bench-maniskill: $(SIMS)/.ok
	$(SPY) -m benchmarks.maniskill_bench --out docs

bench-maniskill-quick: $(SIMS)/.ok
	$(SPY) -m benchmarks.maniskill_bench --quick --out $(SIMS)/bench-quick

# MuJoCo Playground and Brax on jax's CPU backend, apart from mjlab's mujoco pin:
# tests/sims/requirements-jax.txt. From scratch on 2 cores (Dec 2026): the venv 84 s (pip's
# cache warm), the tests 119 s (tests/sims/test_jax.py about 80 s of it, mostly jit compilation).
$(SIMS_JAX)/.ok: pyproject.toml tests/sims/requirements-jax.txt
	$(call new-venv,$(SIMS_JAX))
	$(JPY) -m pip install -q -r tests/sims/requirements-jax.txt -e ".[test]" "$(TORCH)"
	touch $@

test-sims-jax: $(SIMS_JAX)/.ok
	DOCS_MUST_RUN=brax $(JPY) -m pytest -p no:xdist -q tests/sims/test_jax.py tests/test_docs_examples.py \
		$(PYTEST_ARGS)

lint: $(VENV)/.ok
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.ok
	$(VENV)/bin/mypy torchbuf

test-main: $(VENV)/.ok
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

test-compat: $(COMPAT)/.ok
	$(CPY) -m pytest -n 2 -q $(PYTEST_ARGS)

# The main job (CartPole: expert -> BC -> GAIL -> evaluation); the demo extra adds matplotlib.
$(VENV)/.demo-ok: $(VENV)/.ok pyproject.toml
	$(PY) -m pip install -q -e ".[demo]" "$(TORCH)"
	touch $@

demo: $(VENV)/.demo-ok
	$(PY) -m torchbuf demo

# The learners' targets table (BC and GAIL on CartPole and Pendulum, 3 seeds x 50 episodes):
# docs/eval.md, docs/eval.json and docs/img/eval_*.png. Not part of CI (about 22 minutes on 2 cores).
eval: $(VENV)/.demo-ok
	$(PY) -m benchmarks.eval --out docs

# The documentation site (docs/_build/html), built from scratch with warnings as errors.
$(VENV)/.docs-ok: $(VENV)/.ok pyproject.toml
	$(PY) -m pip install -q -e ".[docs]" "$(TORCH)"
	touch $@

docs: $(VENV)/.docs-ok
	rm -rf docs/_build
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) $(COMPAT) $(SIMS) $(SIMS_JAX) $(LEROBOT) $(ROBOMIMIC) .gpu-site .whl .pytest_cache .mypy_cache .ruff_cache

# The formats read back by their tools' own readers, each in its own venv.
# $(call new-venv,DIR): a fresh venv at DIR with pip upgraded and $(TORCH) installed first.
define new-venv
$(PYTHON) -m venv $(1)
$(1)/bin/python -m pip install -q --upgrade pip
$(1)/bin/python -m pip install -q "$(TORCH)"
endef

# lerobot 0.4 pins torch<2.11: it goes in with --no-deps beside the CPU torch, with the
# pieces its LeRobotDataset reader imports (its other pins are left out).
LEROBOT := .venv-lerobot
LPY := $(LEROBOT)/bin/python

$(LEROBOT)/.ok: pyproject.toml
	$(call new-venv,$(LEROBOT))
	$(LPY) -m pip install -q --no-deps lerobot==0.4.4 torchvision==0.28.0 "av>=15,<16" "accelerate>=1.10,<2"
	$(LPY) -m pip install -q "datasets>=4,<5" "huggingface-hub>=0.34.2,<0.36" "packaging>=24.2,<26" \
		"jsonlines>=4,<5" "einops>=0.8,<0.9" "numpy<2.4" pillow pandas pyarrow psutil safetensors pyyaml \
		"$(TORCH)"
	$(LPY) -m pip install -q -e ".[test,lerobot,robomimic]" "$(TORCH)"
	touch $@

test-lerobot: $(LEROBOT)/.ok
	HF_HUB_OFFLINE=1 DOCS_MUST_RUN="lerobot pyarrow" $(LPY) -m pytest -p no:xdist -q \
		tests/lerobot tests/test_export_selection.py \
		tests/test_docs_examples.py  # tests/lerobot first: its conftest lets lerobot import

# Export throughput against lerobot's own writer and a plain h5py loop: docs/export_benchmarks.md.
bench-export: $(LEROBOT)/.ok
	HF_HUB_OFFLINE=1 $(LPY) -m benchmarks.export_bench --out docs

bench-export-quick: $(LEROBOT)/.ok
	HF_HUB_OFFLINE=1 $(LPY) -m benchmarks.export_bench --quick --out $(LEROBOT)/bench-quick

# robomimic 0.3 requires torchvision, tensorboard, egl_probe and more that its
# SequenceDataset never imports: it goes in with --no-deps beside what that reader imports.
ROBOMIMIC := .venv-robomimic
RPY := $(ROBOMIMIC)/bin/python

$(ROBOMIMIC)/.ok: pyproject.toml
	$(call new-venv,$(ROBOMIMIC))
	$(RPY) -m pip install -q --no-deps robomimic==0.3.0
	$(RPY) -m pip install -q -e ".[test,robomimic]" "termcolor>=2" psutil "$(TORCH)"
	touch $@

test-robomimic: $(ROBOMIMIC)/.ok
	DOCS_MUST_RUN=robomimic $(RPY) -m pytest -p no:xdist -q tests/test_robomimic.py \
		tests/test_export_selection.py tests/test_docs_examples.py

# Benchmarks run in the compat env, where imitation 1.0.1 is importable beside torchbuf.
# The bench extra adds matplotlib and torchrl 0.14 (the latest; it brings tensordict 0.14).
BENCH_QUICK_OUT ?= $(COMPAT)/bench-quick

$(COMPAT)/.bench-ok: $(COMPAT)/.ok pyproject.toml
	$(CPY) -m pip install -q -e ".[bench]" "$(TORCH)"
	touch $@

bench: $(COMPAT)/.bench-ok
	$(CPY) -m benchmarks.run --out docs

bench-quick: $(COMPAT)/.bench-ok
	$(CPY) -m benchmarks.run --quick --out $(BENCH_QUICK_OUT)
	$(CPY) -m benchmarks.io_bench --quick --out $(BENCH_QUICK_OUT)
	$(CPY) -m benchmarks.tensor_path --quick --out $(BENCH_QUICK_OUT)

# What recording adds to a torch env's step against a raw (T, N) copy_ floor: docs/tensor_path.md.
bench-tensor: $(VENV)/.ok
	$(PY) -m benchmarks.tensor_path --out docs

# The CUDA checks, on a machine with a CUDA GPU whose python3 holds a CUDA torch (no venv is
# built there: the CPU torch of the venvs has no CUDA). gpu-wheels, run where pip reaches an
# index, fetches torchbuf's other (pure-Python) dependencies into .whl/ for a machine that
# cannot; gpu-check installs them into .gpu-site/, runs the device tests (CUDA cases under
# torch.cuda.set_sync_debug_mode("error")) and the tensor-path benchmark at 4,096 and 65,536
# envs: docs/tensor_path_cuda.md. A dry run on the CPU: make gpu-check GPU_PY=.venv/bin/python
# GPU_DEVICE=cpu GPU_OUT=/tmp/gpu-check (the CUDA cases skip, saying so).
GPU_PY ?= python3
GPU_DEVICE ?= cuda
GPU_OUT ?= docs
GPU_WHEELS := tensordict==0.15.3 pyvers==0.2.3 gymnasium==1.4.0 farama-notifications==0.0.6 \
	stable-baselines3==2.9.2

gpu-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 -d .whl $(GPU_WHEELS)

gpu-check:
	$(GPU_PY) -m pip install -q --no-index --no-deps --upgrade --target .gpu-site .whl/*.whl
	PYTHONPATH=.gpu-site:. timeout 300 $(GPU_PY) -m pytest -p no:xdist -p no:cacheprovider -q -rs \
		tests/test_device_loops.py tests/test_envs.py tests/test_ppo.py
	PYTHONPATH=.gpu-site:. timeout 180 $(GPU_PY) -m benchmarks.tensor_path --device $(GPU_DEVICE) \
		--n-envs 4096 65536 --out $(GPU_OUT)

# Save/load throughput (torchbuf.io, torch.save, imitation's serialize): docs/io_benchmarks.md.
bench-io: $(COMPAT)/.ok
	$(CPY) -m benchmarks.io_bench --out docs
