"""The birth/death rule shared by routers and tools."""

from __future__ import annotations

import pytest

from shared.liveness import supersedes
from shared.messages import NodeBeacon


def beacon(epoch: int, status: str, sent_at: float) -> NodeBeacon:
    return NodeBeacon(node_id="n1", epoch=epoch, instance_id="i1", status=status, sent_at=sent_at)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("candidate", "current", "expected"),
    [
        (beacon(1, "online", 10), None, True),  # first news of a node
        (beacon(2, "online", 10), beacon(1, "online", 10), True),  # a restart
        (beacon(1, "offline", 5), beacon(2, "online", 10), False),  # an old Will never hides the new run
        (beacon(2, "offline", 5), beacon(2, "online", 10), True),  # this run's Will: the node died
        (beacon(2, "offline", 5), beacon(2, "offline", 5), False),  # a repeated death certificate
        (beacon(2, "online", 10), beacon(2, "offline", 5), True),  # re-announced after a lost connection
        (beacon(2, "online", 4), beacon(2, "offline", 5), False),  # a birth older than the death
        (beacon(2, "online", 12), beacon(2, "online", 10), True),  # a refreshed birth
    ],
)
def test_supersedes(candidate: NodeBeacon, current: NodeBeacon | None, expected: bool) -> None:
    assert supersedes(candidate, current) is expected
