"""Which router owns a task: rendezvous (highest random weight) hashing over the live routers.

Every router computes the same owner from the same roster, so exactly one handles each task; when a router
dies only its tasks move.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def rendezvous_owner(task_id: str, router_ids: Iterable[str]) -> str | None:
    """The router with the highest hash weight for `task_id`, or None when there is no router."""
    best: tuple[int, str] | None = None
    for router_id in router_ids:
        digest = hashlib.blake2b(f"{router_id}\x00{task_id}".encode(), digest_size=8).digest()
        weight = (int.from_bytes(digest, "big"), router_id)
        if best is None or weight > best:
            best = weight
    return best[1] if best else None
