# Two entry points: `make demo` (the main job) and `make test` (the suite).
# Each builds .venv on first use from requirements.txt (stamp files make the
# second run free). mmcv is compiled once (about 11 minutes on 2 cores); pip
# caches the wheel, so later environments on the same machine take seconds.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.stamp
pin     = $(shell grep -E '^$(1)==' requirements.txt)
# Installed with --no-deps (their needs are listed in requirements.txt).
NODEPS  := mmdet==|panopticapi-lite==|open_clip_torch==|timm==|torchvision==

.PHONY: all env demo web web-deps test lint format clean-env

all: test

$(STAMP)-base:
	python3 -m venv $(VENV)
	$(PIP) install -q "pip<26" wheel
	$(PIP) install -q "$(call pin,torch)"
	touch $@

$(STAMP)-deps: $(STAMP)-base requirements.txt
	$(PIP) install -q $$(grep -vE '^(#|torch==|mmcv==|$(NODEPS))' requirements.txt | grep -v '^$$')
	$(PIP) install -q "setuptools<70" ninja
	MMCV_WITH_OPS=1 MAX_JOBS=2 $(PIP) install -q --no-build-isolation "$(call pin,mmcv)"
	$(PIP) install -q --no-deps $$(grep -E '^($(NODEPS))' requirements.txt)
	touch $@

$(STAMP)-pkg: $(STAMP)-deps setup.py
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

env: $(STAMP)-pkg

# Debian's Chromium and its driver, for the web app's browser test.
# Stamped only once they are there: a failed install is tried again (and
# its warning said again) on the next run.
$(STAMP)-browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then touch $@; \
	elif apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; then touch $@; \
	else echo "WARNING: could not install chromium: the browser test will be SKIPPED"; fi

# onnxruntime-web for the browser demo, from demo/web/package-lock.json
# (never committed; the server serves it from there). Without npm the
# browser demo's test is SKIPPED, as without chromium.
WEB_STAMP := demo/web/node_modules/.stamp
$(WEB_STAMP): demo/web/package.json demo/web/package-lock.json
	@if command -v npm >/dev/null && (cd demo/web && npm ci --ignore-scripts --no-audit --no-fund); \
	then touch $@; \
	else echo "WARNING: could not install onnxruntime-web (npm ci in demo/web): the browser demo's test will be SKIPPED"; fi

web-deps: $(WEB_STAMP)

# The browser demo (demo/web_server.py): `make web WEIGHTS=rapsam_r50_12e.pth`.
WEIGHTS ?=
web: env $(WEB_STAMP)
	$(PY) demo/web_server.py $(if $(WEIGHTS),--weights $(WEIGHTS))

# outputs/demo is this recipe's own folder: a second run replaces its results.
demo: env
	$(PY) demo/demo.py demo/demo.jpg configs/rap_sam/eval_rap_sam_coco.py --out-dir outputs/demo --overwrite

# The slowest tests are listed at the end: CI has 90 minutes for the suite.
# The suite in TEST_JOBS processes (pytest-xdist), each test file whole in
# one of them (module fixtures built once); 0 runs it in this process. Much
# of the suite waits on process starts and one-thread work, so on 2 cores
# two processes finish in about half the time of one.
TEST_JOBS ?= 2
test: env $(STAMP)-browser $(WEB_STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile --durations=25 tests

# flake8, isort and yapf with the settings in setup.cfg; `make format` fixes.
LINT_PATHS := rap_sam tools demo tests configs setup.py
lint: env
	$(VENV)/bin/flake8 $(LINT_PATHS)
	$(VENV)/bin/isort --check-only --diff $(LINT_PATHS)
	$(VENV)/bin/yapf -r --diff $(LINT_PATHS)

format: env
	$(VENV)/bin/isort -q $(LINT_PATHS)
	$(VENV)/bin/yapf -r -i $(LINT_PATHS)

clean-env:
	rm -rf $(VENV)
