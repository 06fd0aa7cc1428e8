# Billow: `make run` starts local mode, `make test` runs lint, types and the whole suite.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQUIREMENTS := requirements.txt requirements-dev.txt requirements-lago-client.txt
# Lago's JavaScript client, pinned by its package.json and lockfile (npm ci).
LAGO_JS_CLIENT := tests/api/lago_js_client/package.json tests/api/lago_js_client/package-lock.json
STAMP := $(VENV)/.installed-$(shell cat $(REQUIREMENTS) $(LAGO_JS_CLIENT) | sha256sum | cut -c1-12)
CDK_CLI_VERSION := 2.1148.1
CDK := npx --yes aws-cdk@$(CDK_CLI_VERSION)

.PHONY: install run test lint typecheck pytest synth deploy openapi bench bench-billing clean

$(STAMP): $(REQUIREMENTS) $(LAGO_JS_CLIENT)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PYTHON) -m venv $(VENV)/lago-client
	$(VENV)/lago-client/bin/python -m pip install --quiet -r requirements-lago-client.txt
	rm -rf $(VENV)/lago-js-client
	if command -v npm >/dev/null; then \
		mkdir -p $(VENV)/lago-js-client && cp $(LAGO_JS_CLIENT) $(VENV)/lago-js-client/ && \
		npm ci --prefix $(VENV)/lago-js-client --no-audit --no-fund --loglevel=error; \
	else \
		echo "npm not found: Lago's JavaScript client is not installed and its test is skipped"; \
	fi
	# The hosted pages' browser test drives Debian's Chromium (Playwright's own browser
	# downloads are not reachable everywhere).
	if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "Chromium could not be installed: the browser test is skipped"; \
	fi
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(PY) -m local

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The suite spends most of its time waiting (queues long-polled, retries, Stripe's webhooks),
# not computing: one pytest process keeps 0.8 of a core busy. Four workers, each with its
# own local Billow, overlap those waits on two cores (8.3 min alone, 3.6 min in four).
PYTEST_WORKERS ?= 4
pytest: $(STAMP)
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist worksteal

# mypy (about 100 s from a cold cache) runs beside pytest's workers.
test: lint
	$(MAKE) --no-print-directory -j2 typecheck pytest

synth: $(STAMP)
	$(PY) app.py

deploy: $(STAMP)
	$(CDK) deploy --app "$(PY) app.py" $(CDK_ARGS)

openapi: $(STAMP)
	PYTHONPATH=layers/billow/python $(PY) -c "from billow.api.app import openapi_document; print(openapi_document())" > docs/openapi.json

bench: $(STAMP)
	$(PY) bench/cold_start.py

# make bench-billing SUBSCRIPTIONS=10000 (default 2,000; up to 100,000)
SUBSCRIPTIONS ?= 2000
bench-billing: $(STAMP)
	$(PY) bench/billing_run.py --subscriptions $(SUBSCRIPTIONS)

clean:
	rm -rf $(VENV) cdk.out .build
