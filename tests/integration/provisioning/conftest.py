"""Fixtures of the multi-host provisioning tests: network-namespace boards reached over SSH (see netns_boards)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns_boards import Board, free_subnet, run, service_user, start_sshd, stop, why_not


@pytest.fixture(scope="module")
def fleet_dir() -> Iterator[Path]:
    reason = why_not()
    if reason:
        pytest.skip(reason)
    # Under /tmp with mode 0755: the boards' service users must traverse it (pytest's tmp_path is 0700).
    folder = Path(tempfile.mkdtemp(prefix="se-fleet-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def boards(fleet_dir: Path) -> Iterator[list[Board]]:
    subnet, tag = free_subnet(), f"{os.getpid() % 100000}"
    bridge = f"sebr{tag}"
    boards = [Board(f"board{index}", f"se-{tag}-b{index}", f"{subnet}.{index + 1}") for index in (1, 2)]
    key = fleet_dir / "control_key"
    try:
        run("ip", "link", "add", bridge, "type", "bridge")
        run("ip", "addr", "add", f"{subnet}.1/24", "dev", bridge)
        run("ip", "link", "set", bridge, "up")
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        for index, board in enumerate(boards, start=1):
            host_end, board_end = f"seh{tag}{index}", f"seb{tag}{index}"
            run("ip", "netns", "add", board.namespace)
            run("ip", "link", "add", host_end, "type", "veth", "peer", "name", board_end)
            run("ip", "link", "set", board_end, "netns", board.namespace)
            run("ip", "link", "set", host_end, "master", bridge)
            run("ip", "link", "set", host_end, "up")
            inside = ["ip", "netns", "exec", board.namespace]
            run(*inside, "ip", "addr", "add", f"{board.address}/24", "dev", board_end)
            run(*inside, "ip", "link", "set", board_end, "up")
            run(*inside, "ip", "link", "set", "lo", "up")
            start_sshd(board, fleet_dir / f"sshd-{board.name}", key)
        yield boards
    finally:
        for board in boards:
            stop(board)
            subprocess.run(["ip", "netns", "del", board.namespace], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        for board in boards:
            subprocess.run(["userdel", service_user(board)], capture_output=True, check=False)
