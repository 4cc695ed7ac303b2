"""llama-cpp-python built once on the first board of a kind, fetched back, and shipped to every board of the kind.

Two network-namespace boards (tests/netns_boards.py) of one kind. `--build-llama-on-boards` makes that kind count
as one the control node cannot build (a "foreign" kind, as a Jetson is to an x86 laptop), and the test's cache
starts without its wheel, so `edge-agent provision` builds it on board1 (the first in inventory order) from the
shipped sdist with `pip wheel --no-index`, fetches it back into cache/llama/<kind>/, and the main playbook installs
that wheel on both boards. A second provision finds it in the cache and builds nothing.

A real llama.cpp build takes minutes (about 5 on 2 free cores), too long for every CI run: the test is opt-in,
SYMPHONY_EDGE_BOARD_BUILD=1. The planning is unit-tested in tests/unit/provisioning/test_boardbuild.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from netns_boards import Board, provision, recap, write_fleet

from provisioning.targets import BUNDLED_MODEL_FILE, control_node_platform, control_node_python

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("SYMPHONY_EDGE_BOARD_BUILD") != "1",
        reason="opt-in: SYMPHONY_EDGE_BOARD_BUILD=1 runs a real llama-cpp-python source build on a board (minutes)",
    ),
]
BOARD_CACHE = Path.home() / ".cache" / "symphony-edge" / "test-board-build"
# pip's own cache for the provision runs: this machine's may hold a llama-cpp-python wheel, which would count as found
PIP_CACHE = Path.home() / ".cache" / "symphony-edge" / "test-board-build-pip"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build_play(output: str) -> str:
    """The output of ansible/build-llama.yml (it runs before site.yml), or "" when it did not run."""
    start = output.find("PLAY [Build llama-cpp-python on one board per kind]")
    if start < 0:
        return ""
    recap = output.find("PLAY RECAP", start)
    return output[start : output.find("\n\n", recap)]


def _installed_from(board_prefix: Path) -> str:
    """Where pip installed llama-cpp-python from in a board's venv (direct_url.json of its dist-info)."""
    found = list((board_prefix / "opt/symphony-edge/venv/lib").glob("python3*/site-packages/llama_cpp_python-*"))
    assert len(found) == 1, found
    return str(json.loads((found[0] / "direct_url.json").read_text())["url"])


@pytest.mark.timeout(900)
def test_a_failed_board_build_stops_provisioning_and_names_the_board(fleet_dir: Path, boards: list[Board]) -> None:
    kind = f"{control_node_platform()}-py{control_node_python()}-cpu"
    shutil.rmtree(BOARD_CACHE / "llama", ignore_errors=True)
    inventory, fleet = write_fleet(fleet_dir, boards, "llamacpp")
    options = ["--build-llama-on-boards", "-e", "edge_agent_python=/usr/bin/false"]  # no venv, so no build
    output, _ = provision(
        inventory, fleet, fleet_dir / "rendered", options, BOARD_CACHE, {"PIP_CACHE_DIR": str(PIP_CACHE)}, exit_code=2
    )
    assert "building llama-cpp-python on board1 failed" in output and "--no-build-llama" in output
    assert "PLAY [Host the MQTT broker]" not in output  # stopped before site.yml
    assert not list((BOARD_CACHE / "llama" / kind).glob("*.whl"))


@pytest.mark.timeout(3600)
def test_the_first_board_builds_llama_cpp_python_and_the_second_installs_the_fetched_wheel(
    fleet_dir: Path, boards: list[Board]
) -> None:
    kind = f"{control_node_platform()}-py{control_node_python()}-cpu"
    shutil.rmtree(BOARD_CACHE / "llama", ignore_errors=True)  # no wheel at hand: it must be built on a board
    shutil.rmtree(BOARD_CACHE / "llama-build" / kind / "fetched", ignore_errors=True)
    inventory, fleet = write_fleet(fleet_dir, boards, "llamacpp")
    out = fleet_dir / "rendered"
    options, environment = ["--build-llama-on-boards"], {"PIP_CACHE_DIR": str(PIP_CACHE)}

    first, first_s = provision(inventory, fleet, out, options, BOARD_CACHE, environment)
    build = _build_play(first)
    assert "board1" in build and "board2" not in build, build[-3000:]  # one board per kind: the first
    built = re.search(r"built on board1 in (\d+):(\d+):([\d.]+)", build)
    fetched = re.search(r"built on board1 and fetched back in (\d+) s: (\S+)", first)
    assert built and fetched, first[-4000:]
    build_s = int(built.group(1)) * 3600 + int(built.group(2)) * 60 + float(built.group(3))

    # The cache holds the wheel board1 built (same bytes), board2 built nothing, both installed that wheel.
    cached = list((BOARD_CACHE / "llama" / kind).glob("llama_cpp_python-*.whl"))
    assert len(cached) == 1 and str(cached[0]) == fetched.group(2)
    on_board1 = list((fleet_dir / "board1/opt/symphony-edge/artifacts/llama-build/wheel").glob("*.whl"))
    assert [_sha256(path) for path in on_board1] == [_sha256(cached[0])]
    assert not (fleet_dir / "board2/opt/symphony-edge/artifacts/llama-build").exists()
    for board in boards:
        prefix = fleet_dir / board.name
        shipped = prefix / "opt/symphony-edge/artifacts/wheelhouse" / cached[0].name
        assert _sha256(shipped) == _sha256(cached[0])
        assert _installed_from(prefix) == f"file://{shipped}"
        assert recap(first, board.name)["failed"] == 0

    # The wheel works on board2: it loads the shipped model and completes.
    venv_python = fleet_dir / "board2/opt/symphony-edge/venv/bin/python"
    model = fleet_dir / "board2/var/lib/symphony-edge/models" / BUNDLED_MODEL_FILE
    script = (
        "import sys, llama_cpp; model = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, verbose=False); "
        "print(model('2 + 2 =', max_tokens=4)['choices'][0]['text'])"
    )
    completed = subprocess.run(
        [str(venv_python), "-c", script, str(model)], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-2000:]

    # A second provision finds the wheel in the cache: no build, nothing changed.
    second, second_s = provision(inventory, fleet, out, options, BOARD_CACHE, environment)
    assert _build_play(second) == "" and "building llama-cpp-python" not in second
    for board in boards:
        assert recap(second, board.name)["changed"] == 0

    # What installing the fetched wheel costs a board (what board2 paid instead of a source build).
    shipped = fleet_dir / "board2/opt/symphony-edge/artifacts/wheelhouse" / cached[0].name
    started = time.monotonic()
    reinstall = [str(venv_python), "-m", "pip", "install", "--no-index", "--no-deps", "--force-reinstall", str(shipped)]
    subprocess.run(reinstall, check=True, capture_output=True, timeout=300)
    install_s = time.monotonic() - started
    print(
        f"\nllama-cpp-python for {kind}: built on board1 in {build_s:.0f} s, built + fetched back in "
        f"{fetched.group(1)} s ({cached[0].stat().st_size / 1e6:.1f} MB); first provision {first_s:.0f} s, "
        f"second {second_s:.0f} s; installing the fetched wheel on board2 {install_s:.1f} s"
    )
