"""Who may publish and subscribe to what (DESIGN §7), and the two file formats that enforce it.

One `Account` per broker username: a node (its agents, and its router when it hosts one), a client, or an
operator. The same rules are rendered as a mosquitto `acl_file` and as the YAML that
`broker.embedded.TopicACL.load` reads for amqtt's topic ACL plugin, so both brokers enforce the same policy.
Every filter names the username itself where it matters (`task/submit/alice`, `reply/alice`,
`task/alice/+/events`): mosquitto's `pattern ... %u` lines expanded per account at render time, so both brokers
read the same rules, and only client accounts get them (a node or an operator does not submit tasks). `Patterns`
renders real `%u` patterns for an ACL that wants them (both brokers read them alike).

Tasks are bound to accounts by their submit topic: client `alice` may write only `task/submit/alice`, so the
router knows who asked from the topic (MQTT 3.1.1 carries no identity) and answers on `reply/alice`.

Task events live under the submitting client's id (`task/{client}/{task}/events`): a client reads its own tasks'
events and nobody else's; operators read all of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from broker.bridges import BridgeTopic
from shared.topics import Topics, home_assistant_config_filter, home_assistant_status_topic, site_agent_id


@dataclass(frozen=True)
class Account:
    """A broker username and the topic filters it may publish to and subscribe to."""

    username: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def node_account(
    topics: Topics,
    node_id: str,
    agent_ids: Iterable[str],
    router_id: str | None = None,
    home_assistant_prefix: str | None = None,
    site: str | None = None,
    summaries: bool = False,
) -> Account:
    """A node writes its own beacon/state, results and bids; reads its agents' run topics and bid requests.

    It also reads its own beacon and state: at start it checks that no other live instance uses its node id.
    It reads its own desired state and operator orders (written by operators only), and the beacons of the
    fabric: they say which peer serves a model it has to fetch. With Home Assistant discovery on, it writes its
    own discovery configs and reads Home Assistant's birth. With site summaries (`wan: summaries`), its router
    reads every site's summary and, at a site, writes that site's summary alone and takes the runs of that
    site's agent.
    """
    p = topics.prefix
    publish = [topics.beacon(node_id), topics.state(node_id), f"{p}/router/+/inbox", f"{p}/router/+/bids"]
    subscribe = [topics.beacon(node_id), topics.state(node_id), topics.bid_request(), topics.rebirth()]
    subscribe += [topics.desired(node_id), topics.control(node_id), topics.beacons()]
    subscribe += [topics.agent_run(agent_id) for agent_id in agent_ids]
    if router_id is not None:
        publish += _router_publish(topics, router_id)
        subscribe += _router_subscribe(topics, router_id)
        if summaries:
            subscribe.append(topics.site_summaries())
        if summaries and site is not None:
            publish.append(topics.site_summary(site))
            subscribe.append(topics.agent_run(site_agent_id(site)))
    if home_assistant_prefix is not None:
        publish.append(home_assistant_config_filter(topics.fabric, node_id, home_assistant_prefix))
        subscribe.append(home_assistant_status_topic(home_assistant_prefix))
    return Account(node_id, _unique(publish), _unique(subscribe))


def _router_publish(topics: Topics, router_id: str) -> list[str]:
    p = topics.prefix
    return [
        f"{p}/agent/+/run",
        topics.all_task_events(),  # task/{client}/{task}/events: the router picks the client from the reply topic
        f"{p}/reply/+",
        topics.router_presence(router_id),
        topics.bid_request(),
        topics.ledgers(),  # claims and answers shared between routers (router.ledger)
        topics.rebirth(),
    ]


def _router_subscribe(topics: Topics, router_id: str) -> list[str]:
    return [
        topics.beacons(),
        topics.states(),
        topics.router_presences(),
        topics.task_submissions(),  # task/submit/{client}: the account is in the topic
        topics.router_inbox(router_id),
        topics.router_bids(router_id),
        topics.ledgers(),
        topics.trace_requests(),  # an operator's dashboard asks for full traces
    ]


def client_account(topics: Topics, client_id: str) -> Account:
    """A client submits tasks on its own submit topic and reads only its own replies and its own tasks' events."""
    return Account(client_id, (topics.client_task_submit(client_id),), _client_reads(topics, client_id))


def operator_account(
    topics: Topics,
    operator_id: str,
    also_client: bool = False,
    home_assistant_prefix: str | None = None,
    summaries: bool = False,
) -> Account:
    """An operator reads beacons, states, router presences and every task's events, and it alone writes the
    nodes' desired states and orders (drain); it reads those back to compare and roll back. It publishes trace
    requests (the dashboard asks for full traces). It submits tasks only if it is also a client (then it reads its
    replies, like any client).

    With Home Assistant discovery on, an operator account is also what Home Assistant logs in with: it reads the
    discovery configs and publishes Home Assistant's birth and Will on `<prefix>/status`.
    """
    subscribe = [topics.beacons(), topics.states(), topics.router_presences(), topics.all_task_events()]
    subscribe += [topics.site_summaries()] if summaries else []
    subscribe += [topics.desireds(), topics.controls()]
    # the dashboard asks the routers for every task's full trace; operators alone write desired states and orders
    publish: list[str] = [topics.trace_requests(), topics.desireds(), topics.controls()]
    if home_assistant_prefix is not None:
        subscribe.append(f"{home_assistant_prefix}/#")
        publish.append(home_assistant_status_topic(home_assistant_prefix))
    if also_client:
        publish.append(topics.client_task_submit(operator_id))
        subscribe += _client_reads(topics, operator_id)
    return Account(operator_id, tuple(publish), _unique(subscribe))


def _client_reads(topics: Topics, client_id: str) -> tuple[str, ...]:
    return (topics.reply(client_id), topics.client_task_events(client_id))


def bridge_account(topics: Topics, site: str, bridged: Iterable[BridgeTopic]) -> Account:
    """A site's bridge on the hub: writes exactly what the site sends out, reads exactly what it takes in."""
    bridged = list(bridged)
    publish = [topic.pattern for topic in bridged if topic.direction in ("out", "both")]
    subscribe = [topic.pattern for topic in bridged if topic.direction in ("in", "both")]
    return Account(bridge_username(site), tuple(publish), tuple(subscribe))


def bridge_username(site: str) -> str:
    return f"bridge-{site}"


def _unique(filters: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(filters))


@dataclass(frozen=True)
class Patterns:
    """Rules for every account, `%u` standing for its username (mosquitto's `pattern` lines; the embedded
    broker's `patterns`). Provisioning renders none: it writes each account's rules out, so a node or an operator
    gets no client rights; an ACL written by hand may use them, with the same meaning on both brokers."""

    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()


def client_patterns(topics: Topics) -> Patterns:
    """A client's rights as patterns: submit on task/submit/%u, read reply/%u and task/%u/+/events."""
    return Patterns(
        (f"{topics.prefix}/task/submit/%u",), (f"{topics.prefix}/reply/%u", f"{topics.prefix}/task/%u/+/events")
    )


def mosquitto_acl(accounts: Iterable[Account], patterns: Patterns = Patterns()) -> str:
    """The mosquitto `acl_file` text: `topic write` for publish, `topic read` for subscribe and delivery."""
    lines = ["# rendered by symphony-edge provisioning; edits are overwritten"]
    lines += [f"pattern write {topic}" for topic in patterns.publish]
    lines += [f"pattern read {topic}" for topic in patterns.subscribe]
    for account in accounts:
        lines += ["", f"user {account.username}"]
        lines += [f"topic write {topic}" for topic in account.publish]
        lines += [f"topic read {topic}" for topic in account.subscribe]
    return "\n".join(lines) + "\n"


def amqtt_acl(accounts: Iterable[Account], patterns: Patterns = Patterns()) -> dict[str, Any]:
    """The mapping `broker.embedded.TopicACL.load` reads: {publish: {user: [...]}, subscribe: {user: [...]}},
    and `patterns` when there are any."""
    accounts = list(accounts)
    acl: dict[str, Any] = {
        "publish": {account.username: list(account.publish) for account in accounts},
        "subscribe": {account.username: list(account.subscribe) for account in accounts},
    }
    if patterns.publish or patterns.subscribe:
        acl["patterns"] = {"publish": list(patterns.publish), "subscribe": list(patterns.subscribe)}
    return acl
