"""Which beacon of a node to believe (Sparkplug's birth/death rule, DESIGN §3), shared by routers and tools.

The newest epoch wins, so an offline Will left over from an earlier run never hides the node's current run.
Within one epoch an offline certificate is final, except against a birth sent after it: the node lived through
a lost connection (its Will fired) and re-announced itself on reconnecting.
"""

from __future__ import annotations

from shared.messages import NodeBeacon


def supersedes(candidate: NodeBeacon, current: NodeBeacon | None) -> bool:
    """True when `candidate` should replace `current` as what we believe about the node."""
    if current is None or candidate.epoch > current.epoch:
        return True
    if candidate.epoch < current.epoch:
        return False
    if current.status == "offline":
        return candidate.status != "offline" and candidate.sent_at > current.sent_at
    return True
