# The README's two commands: `make demo` (whole pipeline on the offline demo) and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup demo test profile gpu-check clean-venv

setup: $(STAMP)

# pip takes torch 2.14.1 / torchvision 0.29.1 from this machine's local wheels (see README).
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: setup
	dvc repro
	@for task in $$(python -c 'from dareg import params; print(*params.load().run.tasks)'); do \
		cat metrics/reports/$$task.md; done

test: setup
	python -m pytest

# make profile PROFILE=original : rewrite params.yaml with profiles/$(PROFILE).yaml (git checkout params.yaml undoes it)
profile: setup
	python -m dareg.profile profiles/$(PROFILE).yaml

# On a machine with an NVIDIA GPU, from the source tree: no venv, no DVC; the machine's own
# python3 with torch (README "GPU"). Exits 3 where there is no CUDA device.
GPU_PYTHON ?= python3
gpu-check:
	PYTHONPATH=src $(GPU_PYTHON) benchmarks/gpu_check.py

clean-venv:
	rm -rf $(VENV)
