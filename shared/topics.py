"""Every topic string of the fabric, built in one place (DESIGN §3).

All topics live under the prefix ``symphony/{fabric}``. Ids that end up inside a topic level are checked by
`validate_id` so a client can never subscribe to or publish on someone else's topics through a crafted id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import TopicError

ROOT = "symphony"
MAX_ID_LENGTH = 128
MAX_TOPIC_LENGTH = 1024
_FORBIDDEN_CHARACTERS = frozenset("+#/")


_VALID_ID = re.compile(rf"[^+#/\x00-\x1f\x7f]{{1,{MAX_ID_LENGTH}}}")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def validate_id(value: str, what: str = "id") -> str:
    """Return `value` if it can be one topic level, else raise `TopicError` saying why."""
    if isinstance(value, str) and _VALID_ID.fullmatch(value):  # the common case, checked in one call
        return value
    if not isinstance(value, str) or not value:
        raise TopicError(f"{what} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise TopicError(f"{what} is longer than {MAX_ID_LENGTH} characters")
    bad = sorted({character for character in value if character in _FORBIDDEN_CHARACTERS})
    if bad:
        raise TopicError(f"{what} {value!r} contains {' '.join(bad)} (not allowed in a topic level)")
    raise TopicError(f"{what} {value[:40]!r} contains control characters")


def validate_publish_topic(value: str) -> str:
    """Return `value` if a client may publish on it (no wildcards, not empty, no control characters)."""
    if not value or len(value) > MAX_TOPIC_LENGTH:
        raise TopicError(f"topic must have 1..{MAX_TOPIC_LENGTH} characters")
    if "+" in value or "#" in value:
        raise TopicError(f"topic {value!r} contains a wildcard")
    if _CONTROL_CHARACTER.search(value):
        raise TopicError("topic contains control characters")
    return value


@dataclass(frozen=True)
class Topics:
    """Topic builder for one fabric; every method returns a full topic or a subscription filter."""

    fabric: str = "default"

    def __post_init__(self) -> None:
        validate_id(self.fabric, "fabric name")

    @property
    def prefix(self) -> str:
        return f"{ROOT}/{self.fabric}"

    def everything(self) -> str:
        return f"{self.prefix}/#"

    # nodes
    def beacon(self, node_id: str) -> str:
        return f"{self.prefix}/beacon/{validate_id(node_id, 'node id')}"

    def beacons(self) -> str:
        return f"{self.prefix}/beacon/+"

    def state(self, node_id: str) -> str:
        return f"{self.prefix}/state/{validate_id(node_id, 'node id')}"

    def states(self) -> str:
        return f"{self.prefix}/state/+"

    def agent_run(self, agent_id: str) -> str:
        return f"{self.prefix}/agent/{validate_id(agent_id, 'agent id')}/run"

    def rebirth(self) -> str:
        """Routers ask live nodes to republish their beacons here (a `RebirthRequest`)."""
        return f"{self.prefix}/rebirth"

    # routers
    def router_presence(self, router_id: str) -> str:
        return f"{self.prefix}/router/{validate_id(router_id, 'router id')}"

    def router_presences(self) -> str:
        return f"{self.prefix}/router/+"

    def router_inbox(self, router_id: str) -> str:
        return f"{self.prefix}/router/{validate_id(router_id, 'router id')}/inbox"

    def router_bids(self, router_id: str) -> str:
        return f"{self.prefix}/router/{validate_id(router_id, 'router id')}/bids"

    def bid_request(self) -> str:
        return f"{self.prefix}/bid/request"

    # tasks and clients
    def task_submit(self) -> str:
        return f"{self.prefix}/task/submit"

    def task_events(self, task_id: str) -> str:
        return f"{self.prefix}/task/{validate_id(task_id, 'task id')}/events"

    def all_task_events(self) -> str:
        return f"{self.prefix}/task/+/events"

    def reply(self, client_id: str) -> str:
        return f"{self.prefix}/reply/{validate_id(client_id, 'client id')}"

    def shared(self, group: str, topic_filter: str) -> str:
        """A shared subscription (`$share/{group}/{filter}`): the broker hands each message to one member."""
        return f"$share/{validate_id(group, 'share group')}/{topic_filter}"

    def last_level(self, topic: str) -> str:
        """The id in the last level of a beacon/state/presence topic."""
        return topic.rsplit("/", 1)[-1]
