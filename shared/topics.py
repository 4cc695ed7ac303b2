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


def _forbidden_code_points() -> str:
    """The code points MQTT (3.1.1 §1.5.3, 5.0 §1.5.4) forbids or advises against in a topic or client id, as the
    body of a regex character class: C0 and C1 controls (mosquitto disconnects a client publishing on a topic
    with U+0085), surrogates (not UTF-8 at all), and the Unicode non-characters U+FDD0..U+FDEF and U+xFFFE/U+xFFFF
    in every plane."""
    ranges = [r"\x00-\x1f", r"\x7f-\x9f", r"\ud800-\udfff", r"\ufdd0-\ufdef"]
    ranges += [rf"\U{plane:04x}fffe\U{plane:04x}ffff" for plane in range(17)]
    return "".join(ranges)


_FORBIDDEN = _forbidden_code_points()
_VALID_ID = re.compile(rf"[^+#/{_FORBIDDEN}]{{1,{MAX_ID_LENGTH}}}")
_CONTROL_CHARACTER = re.compile(rf"[{_FORBIDDEN}]")  # named for the C0 controls it began with; now all of MQTT's


def _is_plain_ascii_id(value: str) -> bool:
    """The common id, checked in C: printable ASCII (no C0 control, no DEL: the only code points of MQTT's
    forbidden set below U+0080), 1..MAX_ID_LENGTH long, no topic syntax. The regex below says the same of every
    string, but its character class (ranges in all 17 planes) costs a few microseconds per id, and every message
    the fabric decodes or builds checks several ids."""
    return (
        value.isascii()
        and value.isprintable()
        and 0 < len(value) <= MAX_ID_LENGTH
        and "+" not in value
        and "#" not in value
        and "/" not in value
    )


def validate_id(value: str, what: str = "id") -> str:
    """Return `value` if it can be one topic level, else raise `TopicError` saying why."""
    if isinstance(value, str) and (_is_plain_ascii_id(value) or _VALID_ID.fullmatch(value)):
        return value
    if not isinstance(value, str) or not value:
        raise TopicError(f"{what} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise TopicError(f"{what} is longer than {MAX_ID_LENGTH} characters")
    bad = sorted({character for character in value if character in _FORBIDDEN_CHARACTERS})
    if bad:
        raise TopicError(f"{what} {value!r} contains {' '.join(bad)} (not allowed in a topic level)")
    raise TopicError(f"{what} {value[:40]!r} contains control characters or non-characters (MQTT forbids them)")


def validate_publish_topic(value: str) -> str:
    """Return `value` if a client may publish on it (no wildcards, not empty, none of the code points MQTT forbids)."""
    if not value or len(value) > MAX_TOPIC_LENGTH:
        raise TopicError(f"topic must have 1..{MAX_TOPIC_LENGTH} characters")
    if "+" in value or "#" in value:
        raise TopicError(f"topic {value!r} contains a wildcard")
    plain = value.isascii() and value.isprintable()  # as in `_is_plain_ascii_id`: no forbidden code point, in C
    if not plain and _CONTROL_CHARACTER.search(value):
        raise TopicError("topic contains control characters or non-characters (MQTT forbids them)")
    return value


SITE_AGENT_PREFIX = "site:"


def site_agent_id(site: str) -> str:
    """The agent id under which a site's router takes runs from routers elsewhere (docs/sites.md)."""
    return validate_id(f"{SITE_AGENT_PREFIX}{validate_id(site, 'site name')}", "site agent id")


def site_of_agent(agent_id: str) -> str | None:
    """The site of a site agent id (`site:{site}`), else None."""
    return agent_id[len(SITE_AGENT_PREFIX) :] or None if agent_id.startswith(SITE_AGENT_PREFIX) else None


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
        """An agent's RunRequests, and the RunCancels of those runs (same topic: delivered in order)."""
        return f"{self.prefix}/agent/{validate_id(agent_id, 'agent id')}/run"

    def desired(self, node_id: str) -> str:
        """A node's retained desired state (`DesiredState`): operators write, the node reads."""
        return f"{self.prefix}/desired/{validate_id(node_id, 'node id')}"

    def desireds(self) -> str:
        return f"{self.prefix}/desired/+"

    def control(self, node_id: str) -> str:
        """A node's retained operator order (`NodeControl`, e.g. drain): operators write, the node reads."""
        return f"{self.prefix}/control/{validate_id(node_id, 'node id')}"

    def controls(self) -> str:
        return f"{self.prefix}/control/+"

    def rebirth(self) -> str:
        """Routers ask live nodes to republish their beacons here (a `RebirthRequest`)."""
        return f"{self.prefix}/rebirth"

    def trace_requests(self) -> str:
        """Observers ask routers for every task's full trace here (a `TraceRequest`, from the dashboard)."""
        return f"{self.prefix}/trace/request"

    # routers
    def router_presence(self, router_id: str) -> str:
        return f"{self.prefix}/router/{validate_id(router_id, 'router id')}"

    def router_presences(self) -> str:
        return f"{self.prefix}/router/+"

    def router_inbox(self, router_id: str) -> str:
        return f"{self.prefix}/router/{validate_id(router_id, 'router id')}/inbox"

    def router_bids(self, router_id: str) -> str:
        return f"{self.prefix}/router/{validate_id(router_id, 'router id')}/bids"

    def ledger(self, task_id: str) -> str:
        """A task's retained ledger entry (claim, then answer): routers only."""
        return f"{self.prefix}/ledger/{validate_id(task_id, 'task id')}"

    def ledgers(self) -> str:
        return f"{self.prefix}/ledger/+"

    def bid_request(self) -> str:
        return f"{self.prefix}/bid/request"

    # sites (docs/sites.md)
    def site_summary(self, site: str) -> str:
        """A site router's retained `SiteSummary`: what crosses the WAN links instead of every board's state."""
        return f"{self.prefix}/site/{validate_id(site, 'site name')}/summary"

    def site_summaries(self) -> str:
        return f"{self.prefix}/site/+/summary"

    # tasks and clients
    def task_submit(self) -> str:
        """The legacy submission topic (no account in it): read only by routers of an anonymous fabric."""
        return f"{self.prefix}/task/submit"

    def client_task_submit(self, client_id: str) -> str:
        """Where client account `client_id` submits (and cancels) its tasks: the topic names the account, so a
        broker ACL binds it to the login and the router knows who asked (docs/tenancy.md)."""
        return f"{self.prefix}/task/submit/{validate_id(client_id, 'client id')}"

    def task_submissions(self) -> str:
        """Every client's submissions (routers)."""
        return f"{self.prefix}/task/submit/+"

    def submit_owner(self, topic: str) -> str | None:
        """The client account of `{p}/task/submit/{id}`, else None (the legacy topic, or not a submission)."""
        return self._owner(topic, "task/submit", "")

    def task_events(self, client_id: str, task_id: str) -> str:
        """A task's trace events, under the submitting client's id: only that client and operators read them."""
        return f"{self.prefix}/task/{validate_id(client_id, 'client id')}/{validate_id(task_id, 'task id')}/events"

    def client_task_events(self, client_id: str) -> str:
        return f"{self.prefix}/task/{validate_id(client_id, 'client id')}/+/events"

    def any_client_task_events(self, task_id: str) -> str:
        """One task's events whoever submitted it (operators)."""
        return f"{self.prefix}/task/+/{validate_id(task_id, 'task id')}/events"

    def all_task_events(self) -> str:
        return f"{self.prefix}/task/+/+/events"

    def reply(self, client_id: str) -> str:
        return f"{self.prefix}/reply/{validate_id(client_id, 'client id')}"

    # reply topics arrive inside messages: hostile input, checked before anything is published on them
    def reply_owner(self, topic: str) -> str | None:
        """The client id of a reply topic inside this fabric's reply namespace (`{p}/reply/{id}`), else None."""
        return self._owner(topic, "reply", "")

    def router_reply_owner(self, topic: str) -> str | None:
        """The router id of `{p}/router/{id}/inbox` or `{p}/router/{id}/bids` (where agents answer), else None."""
        return self._owner(topic, "router", "/inbox") or self._owner(topic, "router", "/bids")

    def _owner(self, topic: str, kind: str, suffix: str) -> str | None:
        head = f"{self.prefix}/{kind}/"
        if not isinstance(topic, str) or not topic.startswith(head) or not topic.endswith(suffix):
            return None
        owner = topic[len(head) : len(topic) - len(suffix)]
        return owner if _VALID_ID.fullmatch(owner) else None

    def shared(self, group: str, topic_filter: str) -> str:
        """A shared subscription (`$share/{group}/{filter}`): the broker hands each message to one member."""
        return f"$share/{validate_id(group, 'share group')}/{topic_filter}"

    def last_level(self, topic: str) -> str:
        """The id in the last level of a beacon/state/presence topic."""
        return topic.rsplit("/", 1)[-1]


# --- Home Assistant MQTT discovery (opt-in; under Home Assistant's own prefix, outside the fabric's) ----------

HOME_ASSISTANT_PREFIX = "homeassistant"
_NOT_AN_OBJECT_ID = re.compile(r"[^a-zA-Z0-9_-]")


def home_assistant_object_id(*parts: str) -> str:
    """Home Assistant's node_id/object_id alphabet: letters, digits, `_` and `-`."""
    return _NOT_AN_OBJECT_ID.sub("_", "_".join(parts))


def home_assistant_node_object(fabric: str, node_id: str) -> str:
    return home_assistant_object_id("symphony", fabric, node_id)


def home_assistant_status_topic(prefix: str = HOME_ASSISTANT_PREFIX) -> str:
    """Where Home Assistant publishes its birth (`online`) and last will (`offline`)."""
    return f"{prefix}/status"


def home_assistant_config_filter(fabric: str, node_id: str, prefix: str = HOME_ASSISTANT_PREFIX) -> str:
    """Every discovery config of one node (what decommission clears, and what the node's ACL allows)."""
    return f"{prefix}/+/{home_assistant_node_object(fabric, node_id)}/+/config"
