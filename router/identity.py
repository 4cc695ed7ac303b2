"""Which router this is and where it keeps its learning: a stable id, created once, kept in the state directory.

    --router-id / settings.router_id      wins, when given
    <state_dir>/router-id                 otherwise: read it, or create it once (router-<host>-<random>)
    --state-file / settings.state_file    wins, when given
    <state_dir>/<router id>.linucb.json   otherwise

So a restarted `edge-agent router` or `start --router` with no flags keeps its id and resumes its LinUCB state,
priors and vote weights. Errors: RouterIdentityError (a ValueError) when the id file holds no valid id.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared.errors import SymphonyError, TopicError
from shared.files import write_atomic
from shared.topics import validate_id

ID_FILE_NAME = "router-id"


class RouterIdentityError(SymphonyError, ValueError):
    """The router id file exists but does not hold a usable id."""


@dataclass(frozen=True)
class RouterIdentity:
    router_id: str
    state_file: Path
    created: bool = False


def random_router_id() -> str:
    """A new id: router-<host>-<4 hex digits>."""
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())[:48]
    return f"router-{host}-{uuid.uuid4().hex[:4]}"


def resolve_identity(
    state_dir: Path,
    router_id: str | None = None,
    state_file: Path | None = None,
    new_id: Callable[[], str] = random_router_id,
) -> RouterIdentity:
    """The router's id and state file (see the module docstring); creates `<state_dir>/router-id` when needed."""
    created = False
    if router_id is None:
        router_id, created = _stored_or_new_id(state_dir.expanduser() / ID_FILE_NAME, new_id)
    path = state_file if state_file is not None else state_dir / f"{router_id}.linucb.json"
    return RouterIdentity(router_id, path.expanduser(), created)


def _stored_or_new_id(path: Path, new_id: Callable[[], str]) -> tuple[str, bool]:
    if path.exists():
        return _read_id(path), False
    router_id = validate_id(new_id(), "router id")
    try:  # linked into place, never replaced: two routers starting at once agree on one id
        write_atomic(path, (router_id + "\n").encode(), mode=0o644, exclusive=True)
    except FileExistsError:
        return _read_id(path), False
    return router_id, True


def _read_id(path: Path) -> str:
    text = path.read_text(errors="replace").strip()
    try:
        return validate_id(text, "router id")
    except TopicError as error:
        raise RouterIdentityError(f"{path} does not hold a valid router id ({error}); fix or delete it") from None
