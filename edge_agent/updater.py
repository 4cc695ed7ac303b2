"""The privileged kit updater: installs the one wheel the node's desired state names into the root-owned venv.

Run as root by `symphony-edge-kit-update.service` (a oneshot the role installs), which its `.path` unit starts
when the agent writes `<state_dir>/kit-spool/request.json` (edge_agent/runtime/kit.py):

    read request.json (then remove it)                 anything in the spool may come from a compromised agent
    read the retained desired/<node> from the broker   with the node's account: only operators can write it
    the request's wheel is the desired state's kit?    no ──► result.json: refused
    copy wheel.whl into a root-owned folder under the desired name, check its size and sha256   ── no ──► refused
    keep the wheel installed now (to go back to), `pip install --no-deps --no-index --force-reinstall` the copy
    result.json ok ──► the agent exits, the service manager starts the new kit, which writes running.json
    no running.json with the new version within --start-timeout ──► reinstall the kept wheel, result.json: why

A wheel runs no code when pip installs it, and with `--no-deps --no-index` nothing else is fetched or
installed: the updater installs exactly the bytes an operator named.

Errors::

    SymphonyError
    └── KitRefused   the request or the wheel's bytes are not the desired state's kit (written to result.json)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_agent.runtime.kit import (
    REQUEST_FILE,
    RESULT_FILE,
    RUNNING_FILE,
    WHEEL_FILE,
    KitRequest,
    KitResult,
    KitRunning,
    read_record,
    write_record,
)
from shared import topics as routes
from shared.config import ConnectionSettings
from shared.errors import SymphonyError
from shared.messages import DesiredState, ModelRef, wheel_version
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

PipRunner = Callable[[list[str]], subprocess.CompletedProcess[str]]
CHUNK_BYTES = 1 << 20


class KitRefused(SymphonyError):
    """The request does not name the desired state's wheel, or the wheel's bytes are not that wheel."""


@dataclass(frozen=True)
class Updater:
    """One node's updater: its spool, the venv's Python, and where it keeps the installed wheel."""

    spool: Path
    python: Path
    keep_dir: Path  # root-owned: the wheel installed last (to reinstall when a new kit does not start)
    fallback: Path | None = None  # the provisioned kit wheel (the wheelhouse's), before any upgrade
    start_timeout_s: float = 90.0

    def take_request(self) -> KitRequest | None:
        request = read_record(self.spool / REQUEST_FILE, KitRequest)
        (self.spool / REQUEST_FILE).unlink(missing_ok=True)  # the path unit must not start us again for it
        return request if isinstance(request, KitRequest) else None

    def update(self, request: KitRequest, desired: DesiredState | None, pip: PipRunner) -> KitResult:
        """Install the requested wheel when it is the desired one; the result is also written to the spool."""
        started = time.time()
        try:
            kit = checked_kit(request, desired)
            with tempfile.TemporaryDirectory(prefix="symphony-kit-") as folder:
                wheel = copy_verified(self.spool / WHEEL_FILE, Path(folder) / kit.name, kit)
                previous = self.kept_wheel()
                failure = self.install(wheel, pip)
                if failure:
                    return self.finish(request, False, f"pip could not install {kit.name}: {failure}")
                installed = self.keep(wheel)
        except KitRefused as error:
            return self.finish(request, False, f"kit updater refused: {error}")
        version = wheel_version(kit.name)
        self.finish(request, True, "", version=version)
        if self.started(version, started):
            self.prune(installed)
            return KitResult(generation=request.generation, sha256=kit.sha256, ok=True, version=version)
        why = f"the new kit {version} did not start within {self.start_timeout_s:g} s"
        if previous is None:
            return self.finish(request, False, f"{why}; no earlier wheel is kept to go back to")
        # Said before the reinstall: an old kit restarted meanwhile must find the failure, not ask again.
        result = self.finish(request, False, f"{why}; reinstalled {previous.name}")
        failure = self.install(previous, pip)
        if failure:
            return self.finish(request, False, f"{why}; pip could not reinstall {previous.name}: {failure}")
        if previous.parent == self.keep_dir:
            self.prune(previous)
        return result

    def started(self, version: str, since: float) -> bool:
        """Whether an agent of `version` wrote running.json after `since`, within the start timeout."""
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            running = read_record(self.spool / RUNNING_FILE, KitRunning)
            if isinstance(running, KitRunning) and running.version == version and running.started_at >= since:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def install(self, wheel: Path, pip: PipRunner) -> str:
        command = [str(self.python), "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall"]
        completed = pip([*command, "--disable-pip-version-check", "--no-input", str(wheel)])
        return "" if completed.returncode == 0 else (completed.stderr or completed.stdout).strip()[-1500:]

    def kept_wheel(self) -> Path | None:
        """The wheel installed now, to go back to: the one kept after the last upgrade, else the provisioned one."""
        kept = (
            sorted(self.keep_dir.glob("*.whl"), key=lambda path: path.stat().st_mtime) if self.keep_dir.is_dir() else []
        )
        if kept:
            return kept[-1]
        return self.fallback if self.fallback is not None and self.fallback.is_file() else None

    def keep(self, wheel: Path) -> Path:
        self.keep_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        target = self.keep_dir / wheel.name
        shutil.copyfile(wheel, target)
        return target

    def prune(self, installed: Path) -> None:
        """Keep only the wheel that runs now."""
        for old in self.keep_dir.glob("*.whl"):
            if old.name != installed.name:
                old.unlink(missing_ok=True)

    def finish(self, request: KitRequest, ok: bool, error: str, version: str = "") -> KitResult:
        result = KitResult(
            generation=request.generation,
            sha256=request.wheel.sha256,
            ok=ok,
            version=version,
            error=error[:2000],
            finished_at=time.time(),
        )
        write_record(self.spool / RESULT_FILE, result)
        return result


def checked_kit(request: KitRequest, desired: DesiredState | None) -> ModelRef:
    """The desired state's kit, when the request names it; KitRefused otherwise."""
    if desired is None or desired.kit is None:
        raise KitRefused("the node's desired state names no kit wheel")
    if desired.node_id != request.node_id:
        raise KitRefused(f"the request is for node {request.node_id!r}, the desired state for {desired.node_id!r}")
    if request.wheel.sha256 != desired.kit.sha256:
        raise KitRefused(
            f"the requested wheel {request.wheel.sha256[:12]} is not the desired {desired.kit.sha256[:12]}"
        )
    try:
        wheel_version(desired.kit.name)
    except ValueError as error:
        raise KitRefused(str(error)) from None
    if os.sep in desired.kit.name or desired.kit.name.startswith("."):
        raise KitRefused(f"the wheel name {desired.kit.name!r} is not a plain file name")
    return desired.kit


def copy_verified(source: Path, target: Path, kit: ModelRef) -> Path:
    """Copy at most the announced bytes of `source` (never through a symbolic link) and check size and sha256."""
    digest, size = hashlib.sha256(), 0
    try:
        descriptor = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as error:
        raise KitRefused(f"cannot read the wheel in the spool: {error}") from None
    with os.fdopen(descriptor, "rb") as stream, target.open("wb") as sink:
        while chunk := stream.read(min(CHUNK_BYTES, kit.size_bytes + 1 - size)):
            digest.update(chunk)
            sink.write(chunk)
            size += len(chunk)
            if size > kit.size_bytes:
                raise KitRefused(f"the wheel in the spool is larger than the {kit.size_bytes} bytes desired")
    if size != kit.size_bytes or digest.hexdigest() != kit.sha256:
        raise KitRefused(f"the wheel in the spool is not {kit.name} (size {size}, sha256 {digest.hexdigest()[:12]})")
    return target


async def retained_desired(connection: ConnectionSettings, node_id: str, wait_s: float = 10.0) -> DesiredState | None:
    """The node's retained desired state, read with the node's own account (None: none, or it did not come)."""
    topics, arrived = Topics(connection.fabric), asyncio.Event()
    found: list[DesiredState] = []

    def on_desired(topic: str, state: DesiredState) -> None:
        found.append(state)
        arrived.set()

    def on_other(topic: str, *_: object) -> None:  # cleared, or not a desired state: there is none to apply
        arrived.set()

    client = FabricClient(connection, unique_client_id(f"{node_id}-kit-update"))
    await client.route(routes.DESIRED.on(topics, node_id), on_desired, on_clear=on_other, on_invalid=on_other)
    try:
        await client.connect()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(arrived.wait(), wait_s)
    finally:
        await client.close()
    return found[-1] if found else None


def run_pip(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)


def default_python() -> Path:
    return Path(sys.executable)
