"""The pure parts of a kit upgrade, and the root updater against a real spool with pip stood in for.

The updater's pip is replaced by a recorder (the integration test runs the real one); everything else (the
spool's files, the copy and its checks, the kept wheel) is real.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from edge_agent.runtime.kit import (
    REQUEST_FILE,
    RESULT_FILE,
    WHEEL_FILE,
    KitRequest,
    KitResult,
    KitSpool,
    kit_step,
    read_record,
)
from edge_agent.updater import Updater, checked_kit
from provisioning.desired import changes, convergence, kit_version
from shared.messages import AgentInfo, DesiredAgent, DesiredState, ModelRef, NodeBeacon, decode, encode, wheel_version

WHEEL_BYTES = b"PK\x03\x04 a wheel of the kit, as far as these tests care"
NEW = ModelRef(
    name="symphony_edge-0.2.0-py3-none-any.whl",
    sha256=hashlib.sha256(WHEEL_BYTES).hexdigest(),
    size_bytes=len(WHEEL_BYTES),
)
AGENT = DesiredAgent(agent_id="n1-a", backend="echo")


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("symphony_edge-0.2.0-py3-none-any.whl", "0.2.0"),
        ("symphony_edge-0.1.0.post7-py3-none-any.whl", "0.1.0.post7"),
        ("symphony_edge-1.0+local-1build-py3-none-any.whl", "1.0+local"),
        ("Symphony.Edge-3.0-py3-none-any.whl", "3.0"),
    ],
)
def test_the_version_comes_from_the_wheel_name(name: str, version: str) -> None:
    assert wheel_version(name) == version


@pytest.mark.parametrize(
    "name", ["other_package-1.0-py3-none-any.whl", "symphony_edge-1.0.tar.gz", "../symphony_edge-1.0-py3-none-any.whl"]
)
def test_anything_but_a_wheel_of_the_kit_is_not_a_kit(name: str) -> None:
    with pytest.raises(ValueError):
        wheel_version(name)


def test_the_kit_step_upgrades_once_and_does_not_retry_a_failed_generation() -> None:
    assert kit_step(None, "0.1.0", 3, None) == ("keep", "")
    assert kit_step(NEW, "0.2.0", 3, None) == ("keep", "")
    assert kit_step(NEW, "0.1.0", 3, None) == ("upgrade", "")
    failed = KitResult(generation=3, sha256=NEW.sha256, ok=False, error="pip could not install it")
    assert kit_step(NEW, "0.1.0", 3, failed) == ("failed", "pip could not install it")
    assert kit_step(NEW, "0.1.0", 4, failed) == ("upgrade", "")  # a new generation (a rollback, a retry) tries again
    bad = NEW.model_copy(update={"name": "notakit.whl"})
    assert kit_step(bad, "0.1.0", 3, None)[0] == "failed"


def test_fleet_apply_keeps_the_retained_kit_unless_one_is_named() -> None:
    wanted = {"n1": (AGENT,)}
    first = changes(wanted, {}, "ops", now=1.0, kit=NEW)
    assert first[0].new.kit == NEW and first[0].new.generation == 1
    current = {"n1": first[0].new}
    assert changes(wanted, current, "ops", now=2.0) == []  # no --kit: the kit stays, nothing changes
    newer = NEW.model_copy(update={"name": "symphony_edge-0.3.0-py3-none-any.whl", "sha256": "d" * 64})
    again = changes(wanted, current, "ops", now=3.0, kit=newer)
    assert (again[0].new.generation, again[0].new.kit, again[0].new.agents) == (2, newer, (AGENT,))
    assert kit_version(again[0].new.kit) == "0.3.0" and kit_version(None) == ""


def test_status_shows_the_kit_desired_against_reported() -> None:
    desired = DesiredState(node_id="n1", generation=2, agents=(AGENT,), kit=NEW)
    info = AgentInfo(agent_id="n1-a", backend="echo", model="echo", max_in_flight=1)
    upgrading = NodeBeacon(
        node_id="n1",
        epoch=1,
        instance_id="i",
        status="draining",
        agents=(info,),
        software_version="0.1.0",
        generation=1,
        desired_generation=2,
        desired_kit="0.2.0",
    )
    row = convergence("n1", desired, upgrading)
    assert (row.kit_reported, row.kit_desired, row.converged) == ("0.1.0", "0.2.0", False)
    assert row.why == "upgrading the kit 0.1.0 -> 0.2.0"
    done = upgrading.model_copy(update={"software_version": "0.2.0", "generation": 2, "status": "online"})
    assert convergence("n1", desired, done).converged


# --- the updater ------------------------------------------------------------------------------------------


class Pip:
    """Records pip's commands; fails for the wheels named in `failing`."""

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.commands: list[list[str]] = []
        self.failing = failing

    def __call__(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        wheel = Path(command[-1])
        assert wheel.is_file() and os.stat(wheel).st_uid == os.getuid()  # the updater's own copy, never the spool's
        code = 1 if wheel.name in self.failing else 0
        return subprocess.CompletedProcess(command, code, "", "ERROR: not a valid wheel" if code else "")


def spool_with(tmp_path: Path, data: bytes = WHEEL_BYTES, wheel: ModelRef = NEW) -> tuple[Updater, KitRequest]:
    spool = KitSpool(tmp_path / "spool")
    spool.directory.mkdir()
    source = tmp_path / "fetched.whl"
    source.write_bytes(data)
    request = KitRequest(node_id="n1", generation=5, wheel=wheel)
    spool.hand_over(source, request)
    fallback = tmp_path / "symphony_edge-0.1.0-py3-none-any.whl"
    fallback.write_bytes(b"the provisioned wheel")
    updater = Updater(spool.directory, Path("/venv/bin/python"), tmp_path / "kept", fallback, start_timeout_s=0.5)
    taken = updater.take_request()
    assert taken == request and not (spool.directory / REQUEST_FILE).exists()
    return updater, request


def desired(kit: ModelRef | None = NEW) -> DesiredState:
    return DesiredState(node_id="n1", generation=5, agents=(AGENT,), kit=kit)


def test_the_updater_installs_only_the_desired_wheel_and_waits_for_the_new_kit(tmp_path: Path) -> None:
    updater, request = spool_with(tmp_path)
    pip = Pip()
    spool = KitSpool(updater.spool)

    def new_kit_starts() -> None:  # what the restarted agent does
        while spool.last_result() is None:
            time.sleep(0.01)
        spool.mark_running("0.2.0")

    agent = threading.Thread(target=new_kit_starts)
    agent.start()
    result = updater.update(request, desired(), pip)
    agent.join()
    assert result.ok and result.version == "0.2.0"
    install = pip.commands[0]
    assert install[:3] == ["/venv/bin/python", "-m", "pip"]
    assert {"--no-deps", "--no-index", "--force-reinstall"} <= set(install) and install[-1].endswith(NEW.name)
    assert [path.name for path in (tmp_path / "kept").iterdir()] == [NEW.name]


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("wrong bytes", "is not symphony_edge-0.2.0"),
        ("too many bytes", "is larger than"),
        ("not desired", "is not the desired"),
        ("no kit desired", "names no kit wheel"),
        ("no desired state", "names no kit wheel"),
        ("a symbolic link", "cannot read the wheel"),
    ],
)
def test_the_updater_refuses_what_the_desired_state_does_not_name(tmp_path: Path, case: str, why: str) -> None:
    data = {"wrong bytes": b"x" * len(WHEEL_BYTES), "too many bytes": WHEEL_BYTES + b"!"}.get(case, WHEEL_BYTES)
    updater, request = spool_with(tmp_path, data)
    if case == "a symbolic link":
        (updater.spool / WHEEL_FILE).unlink()
        (updater.spool / WHEEL_FILE).symlink_to(tmp_path / "fetched.whl")
    wanted = {
        "not desired": desired(NEW.model_copy(update={"sha256": "e" * 64})),
        "no kit desired": desired(None),
        "no desired state": None,
    }.get(case, desired())
    pip = Pip()
    result = updater.update(request, wanted, pip)
    assert not result.ok and why in result.error and result.error.startswith("kit updater refused")
    assert pip.commands == []
    written = read_record(updater.spool / RESULT_FILE, KitResult)
    assert written == result


def test_a_pip_failure_is_reported_and_nothing_is_kept(tmp_path: Path) -> None:
    updater, request = spool_with(tmp_path)
    result = updater.update(request, desired(), Pip(failing=(NEW.name,)))
    assert not result.ok and "pip could not install symphony_edge-0.2.0" in result.error
    assert "not a valid wheel" in result.error and not (tmp_path / "kept").exists()


def test_a_new_kit_that_does_not_start_is_replaced_by_the_one_before(tmp_path: Path) -> None:
    updater, request = spool_with(tmp_path)
    pip = Pip()
    result = updater.update(request, desired(), pip)  # nothing writes running.json: the new kit never came up
    assert not result.ok and "did not start within 0.5 s" in result.error
    assert "reinstalled symphony_edge-0.1.0-py3-none-any.whl" in result.error
    assert [Path(command[-1]).name for command in pip.commands] == [NEW.name, "symphony_edge-0.1.0-py3-none-any.whl"]
    assert KitSpool(updater.spool).last_result() == result


def test_a_request_for_another_node_is_refused() -> None:
    request = KitRequest(node_id="n2", generation=5, wheel=NEW)
    with pytest.raises(Exception, match="for node 'n2'"):
        checked_kit(request, desired())


def test_the_agent_gives_up_waiting_for_an_absent_updater(tmp_path: Path) -> None:
    import asyncio

    spool = KitSpool(tmp_path)
    request = KitRequest(node_id="n1", generation=5, wheel=NEW)
    result = asyncio.run(spool.wait_result(request, timeout_s=0.1, poll_s=0.02))
    assert not result.ok and "did not answer within 0.1 s" in result.error


def test_messages_without_a_kit_are_the_bytes_a_node_of_the_kit_before_reads() -> None:
    """Unknown fields are refused, so a node of the previous kit must get no `kit` key when none is named."""
    plain = encode(DesiredState(node_id="n1", generation=1, agents=(AGENT,)))
    assert b'"kit"' not in plain and decode(plain, DesiredState).kit is None
    assert decode(encode(desired()), DesiredState).kit == NEW
    beacon = NodeBeacon(node_id="n1", epoch=1, instance_id="i", status="online")
    assert b"desired_kit" not in encode(beacon)
    assert decode(encode(beacon.model_copy(update={"desired_kit": "0.2.0"})), NodeBeacon).desired_kit == "0.2.0"
