"""Kit upgrades over the fabric, the node's side: fetch the wheel, hand it to the privileged updater, restart.

    the desired state names a kit wheel (name + sha256 + size) of another version than the one running
        │ fetched from peers like a model (model_store.peers), sha256-checked
        ▼
    drain (beacon `draining`), runs in flight finish
        ▼
    <spool>/wheel.whl + <spool>/request.json ──► symphony-edge-kit-update.path starts the root oneshot
        ▼                                         (`edge-agent kit-update`, edge_agent/updater.py)
    wait for <spool>/result.json
        ├ ok: the node stops with RESTART_EXIT_CODE; the service manager starts the new kit, which reports its
        │     version in the beacon (`software_version`) and applies the rest of the desired state
        └ failed: serve again; the beacon says why (`desired_error`); the old kit keeps serving

The spool directory is the only thing the agent and the updater share. The agent may write anything there, so
the updater trusts none of it but the bytes of the wheel, which it copies, hashes and compares with the
retained desired state it reads from the broker itself. The spool's files are local records, not wire messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.files import write_atomic
from shared.messages import ModelRef, wheel_version

RESTART_EXIT_CODE = 75  # EX_TEMPFAIL: `Restart=on-failure` starts the unit again, now with the new kit
SPOOL_DIRECTORY = "kit-spool"  # under the state directory; the role creates it, so its presence means an updater
REQUEST_FILE, RESULT_FILE, RUNNING_FILE, WHEEL_FILE = "request.json", "result.json", "running.json", "wheel.whl"
MAX_RECORD_BYTES = 64 * 1024


class SpoolRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KitRequest(SpoolRecord):
    """What the agent asks the updater to install: the desired state's wheel (placed beside it as wheel.whl)."""

    node_id: str
    generation: int
    wheel: ModelRef


class KitResult(SpoolRecord):
    """What the updater did with a request (ok: installed; the node restarts into it)."""

    generation: int
    sha256: str
    ok: bool
    version: str = ""
    error: str = Field(default="", max_length=2000)
    finished_at: float = 0.0


class KitRunning(SpoolRecord):
    """Written by every agent that starts: the updater's proof that a new kit came up."""

    version: str
    pid: int
    started_at: float


# --- pure parts -------------------------------------------------------------------------------------------


def kit_step(kit: ModelRef | None, running: str, generation: int, last: KitResult | None) -> tuple[str, str]:
    """What to do about the desired kit: ("keep", "") when it runs (or none is named), ("upgrade", "") when it
    should be installed, ("failed", why) when this generation's install failed already (not tried again: a new
    generation, e.g. a rollback or a fixed wheel, tries again)."""
    if kit is None:
        return "keep", ""
    try:
        wanted = wheel_version(kit.name)
    except ValueError as error:
        return "failed", f"kit: {error}"
    if wanted == running:
        return "keep", ""
    if last is not None and not last.ok and last.generation == generation and last.sha256 == kit.sha256:
        return "failed", last.error
    return "upgrade", ""


def read_record(path: Path, kind: type[SpoolRecord]) -> SpoolRecord | None:
    """A spool record, or None when it is missing, too large or not valid (never follows a symbolic link)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as stream:
        data = stream.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        return None
    try:
        return kind.model_validate_json(data)
    except ValidationError:
        return None


def write_record(path: Path, record: SpoolRecord) -> None:
    """Atomically (a rename replaces a symbolic link planted there, never its target); readable by both sides."""
    write_atomic(path, record.model_dump_json().encode(), mode=0o644)


# --- the agent's side -------------------------------------------------------------------------------------


class KitSpool:
    """The directory the agent shares with the updater (`<state_dir>/kit-spool`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def available(self) -> bool:
        """The role provisions the directory with the updater units: without it nothing would install a wheel."""
        return self.directory.is_dir()

    def last_result(self) -> KitResult | None:
        record = read_record(self.directory / RESULT_FILE, KitResult)
        return record if isinstance(record, KitResult) else None

    def mark_running(self, version: str) -> None:
        with contextlib.suppress(OSError):  # no spool (no updater): nothing waits for this
            write_record(
                self.directory / RUNNING_FILE, KitRunning(version=version, pid=os.getpid(), started_at=time.time())
            )

    def hand_over(self, wheel: Path, request: KitRequest) -> None:
        """Place the wheel and the request (last: its appearance starts the updater)."""
        (self.directory / RESULT_FILE).unlink(missing_ok=True)
        shutil.copyfile(wheel, self.directory / WHEEL_FILE)
        write_record(self.directory / REQUEST_FILE, request)

    async def wait_result(self, request: KitRequest, timeout_s: float, poll_s: float = 0.2) -> KitResult:
        """The updater's answer to `request`; a failed result naming the timeout when none comes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = self.last_result()
            if result is not None and (result.generation, result.sha256) == (request.generation, request.wheel.sha256):
                return result
            await asyncio.sleep(poll_s)
        (self.directory / REQUEST_FILE).unlink(missing_ok=True)  # a late updater finds nothing to do
        return KitResult(
            generation=request.generation,
            sha256=request.wheel.sha256,
            ok=False,
            error=f"the kit updater did not answer within {timeout_s:g} s (is symphony-edge-kit-update.path active?)",
        )
