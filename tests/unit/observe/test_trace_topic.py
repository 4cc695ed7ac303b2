"""`edge-agent trace` follows a client's own namespace with a client file, any client's with an operator file."""

from __future__ import annotations

import pytest

from edge_agent.cli.operate import _trace_topic
from shared.config import ConnectionSettings, NodeConfig
from shared.topics import Topics


@pytest.mark.parametrize(
    ("role", "username", "expected"),
    [
        ("client", "alice", "symphony/f/task/alice/t1/events"),
        ("operator", "ops", "symphony/f/task/+/t1/events"),
        ("node", None, "symphony/f/task/+/t1/events"),  # an open broker: no account, no ACL
    ],
)
def test_trace_topic_follows_the_account_role(role: str, username: str | None, expected: str) -> None:
    config = NodeConfig(node_id="me", role=role, connection=ConnectionSettings(fabric="f", username=username))
    assert _trace_topic(config, Topics("f"), "t1") == expected
