"""Every topic string of the fabric, built in one place (DESIGN §3).

All topics live under the prefix ``symphony/{fabric}``. Ids that end up inside a topic level are checked by
`validate_id` (`shared.ids`) so a client can never subscribe to or publish on someone else's topics through a
crafted id.

The routes at the end bind each topic a component subscribes to to the message kinds it carries: a subscriber
names the route (`FabricClient.route`), and the client decodes, checks and logs before the handler sees a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, Generic, ParamSpec, TypeVar

from shared.ids import MAX_ID_LENGTH as MAX_ID_LENGTH  # re-exported: the ids' rules were first written here
from shared.ids import MAX_TOPIC_LENGTH as MAX_TOPIC_LENGTH
from shared.ids import is_valid_id
from shared.ids import validate_id as validate_id
from shared.ids import validate_publish_topic as validate_publish_topic
from shared.messages import (
    Bid,
    BidRequest,
    DesiredState,
    ErrorReply,
    LedgerEntry,
    NodeBeacon,
    NodeControl,
    NodeState,
    RebirthRequest,
    RouterPresence,
    RunCancel,
    RunChunk,
    RunRequest,
    RunResult,
    SiteSummary,
    TaskAnswer,
    TaskCancel,
    TaskChunk,
    TaskEvent,
    TaskRequest,
    TraceRequest,
    WireModel,
)

ROOT = "symphony"


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
        return owner if is_valid_id(owner) else None

    def shared(self, group: str, topic_filter: str) -> str:
        """A shared subscription (`$share/{group}/{filter}`): the broker hands each message to one member."""
        return f"$share/{validate_id(group, 'share group')}/{topic_filter}"

    def last_level(self, topic: str) -> str:
        """The id in the last level of a beacon/state/presence topic."""
        return topic.rsplit("/", 1)[-1]


# --- routes: each topic a component subscribes to, bound to the message kinds it carries ----------------------

P = ParamSpec("P")
M = TypeVar("M", bound=WireModel)


class Route(Generic[P, M]):
    """A topic of the fabric (its builder in `Topics`) bound to the message kinds it carries.

    The one statement of what may arrive on a topic: `FabricClient.route` decodes each message once, drops (and
    logs) one of another kind, and hands the handler a message of type `M`. On a `retained` route an empty
    payload is no message but a cleared topic (a decommissioned node, a router gone).
    """

    def __init__(self, build: Callable[Concatenate[Topics, P], str], *kinds: type[M], retained: bool = False) -> None:
        self.build = build
        self.kinds = kinds
        self.retained = retained
        self.name = build.__name__

    def on(self, topics: Topics, *args: P.args, **kwargs: P.kwargs) -> TopicRoute[M]:
        """This route's topic (or filter) in one fabric, for `FabricClient.route`."""
        return TopicRoute(self.build(topics, *args, **kwargs), self.kinds, self.retained, self.name)

    def at(self, topic_filter: str) -> TopicRoute[M]:
        """This route's kinds on a filter its caller built (with `build` or a sibling, e.g. one task's events)."""
        return TopicRoute(topic_filter, self.kinds, self.retained, self.name)

    def __repr__(self) -> str:
        return f"Route({self.name}: {' | '.join(kind.__name__ for kind in self.kinds)})"


@dataclass(frozen=True)
class TopicRoute(Generic[M]):
    """A route built for one fabric: the filter to subscribe to and the kinds that may arrive on it."""

    topic_filter: str
    kinds: tuple[type[M], ...]
    retained: bool
    name: str

    def shared_by(self, topics: Topics, group: str | None) -> TopicRoute[M]:
        """The same route as a shared subscription of `group` (each message reaches one member), or as is."""
        if group is None:
            return self
        return TopicRoute(topics.shared(group, self.topic_filter), self.kinds, self.retained, self.name)


# nodes
BEACON = Route(Topics.beacon, NodeBeacon, retained=True)
BEACONS = Route(Topics.beacons, NodeBeacon, retained=True)
STATE = Route(Topics.state, NodeState)
STATES = Route(Topics.states, NodeState)
AGENT_RUN: Route[[str], RunRequest | RunCancel] = Route(Topics.agent_run, RunRequest, RunCancel)
DESIRED = Route(Topics.desired, DesiredState, retained=True)
DESIREDS = Route(Topics.desireds, DesiredState, retained=True)
CONTROL = Route(Topics.control, NodeControl, retained=True)
REBIRTH = Route(Topics.rebirth, RebirthRequest)
BID_REQUEST = Route(Topics.bid_request, BidRequest)
TRACE_REQUESTS = Route(Topics.trace_requests, TraceRequest)
# routers
ROUTER_PRESENCE = Route(Topics.router_presence, RouterPresence, retained=True)
ROUTER_PRESENCES = Route(Topics.router_presences, RouterPresence, retained=True)
ROUTER_INBOX: Route[[str], RunResult | RunChunk | ErrorReply] = Route(
    Topics.router_inbox, RunResult, RunChunk, ErrorReply
)
ROUTER_BIDS = Route(Topics.router_bids, Bid)
LEDGERS = Route(Topics.ledgers, LedgerEntry, retained=True)
SITE_SUMMARIES = Route(Topics.site_summaries, SiteSummary, retained=True)
# tasks and clients
TASK_SUBMIT: Route[[], TaskRequest | TaskCancel] = Route(Topics.task_submit, TaskRequest, TaskCancel)
TASK_SUBMISSIONS: Route[[], TaskRequest | TaskCancel] = Route(Topics.task_submissions, TaskRequest, TaskCancel)
TASK_EVENTS = Route(Topics.task_events, TaskEvent)
CLIENT_TASK_EVENTS = Route(Topics.client_task_events, TaskEvent)
ANY_CLIENT_TASK_EVENTS = Route(Topics.any_client_task_events, TaskEvent)
ALL_TASK_EVENTS = Route(Topics.all_task_events, TaskEvent)
REPLY: Route[[str], TaskAnswer | TaskChunk | ErrorReply] = Route(Topics.reply, TaskAnswer, TaskChunk, ErrorReply)


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
