"""Who may publish and subscribe to what (DESIGN §7), and the two file formats that enforce it.

One `Account` per broker username: a node (its agents, and its router when it hosts one), a client, or an
operator. The same rules are rendered as a mosquitto `acl_file` and as the YAML that
`broker.embedded.TopicACL.load` reads for amqtt's topic ACL plugin, so both brokers enforce the same policy.
Every filter names the username itself where it matters (`reply/alice`, `task/alice/+/events`) rather than using
mosquitto's `%u` patterns, which amqtt's ACL plugin does not have: one rendering, the same meaning on both.

Task events live under the submitting client's id (`task/{client}/{task}/events`): a client reads its own tasks'
events and nobody else's; operators read all of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broker.bridges import BridgeTopic
from shared.topics import Topics, home_assistant_config_filter, home_assistant_status_topic


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
) -> Account:
    """A node writes its own beacon/state, results and bids; reads its agents' run topics and bid requests.

    It also reads its own beacon and state: at start it checks that no other live instance uses its node id.
    It reads its own desired state and operator orders (written by operators only), and the beacons of the
    fabric: they say which peer serves a model it has to fetch. With Home Assistant discovery on, it writes its
    own discovery configs and reads Home Assistant's birth.
    """
    p = topics.prefix
    publish = [topics.beacon(node_id), topics.state(node_id), f"{p}/router/+/inbox", f"{p}/router/+/bids"]
    subscribe = [topics.beacon(node_id), topics.state(node_id), topics.bid_request(), topics.rebirth()]
    subscribe += [topics.desired(node_id), topics.control(node_id), topics.beacons()]
    subscribe += [topics.agent_run(agent_id) for agent_id in agent_ids]
    if router_id is not None:
        publish += _router_publish(topics, router_id)
        subscribe += _router_subscribe(topics, router_id)
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
        topics.task_submit(),
        topics.router_inbox(router_id),
        topics.router_bids(router_id),
        topics.ledgers(),
    ]


def client_account(topics: Topics, client_id: str) -> Account:
    """A client submits tasks and reads only its own replies and its own tasks' events."""
    return Account(client_id, (topics.task_submit(),), _client_reads(topics, client_id))


def operator_account(
    topics: Topics, operator_id: str, also_client: bool = False, home_assistant_prefix: str | None = None
) -> Account:
    """An operator reads beacons, states, router presences and every task's events, and it alone writes the
    nodes' desired states and orders (drain); it reads those back to compare and roll back. It submits tasks
    only if it is also a client (then it reads its replies, like any client).

    With Home Assistant discovery on, an operator account is also what Home Assistant logs in with: it reads the
    discovery configs and publishes Home Assistant's birth and Will on `<prefix>/status`.
    """
    subscribe = [topics.beacons(), topics.states(), topics.router_presences(), topics.all_task_events()]
    subscribe += [topics.desireds(), topics.controls()]
    publish: list[str] = [topics.desireds(), topics.controls()]
    if home_assistant_prefix is not None:
        subscribe.append(f"{home_assistant_prefix}/#")
        publish.append(home_assistant_status_topic(home_assistant_prefix))
    if also_client:
        publish.append(topics.task_submit())
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


def mosquitto_acl(accounts: Iterable[Account]) -> str:
    """The mosquitto `acl_file` text: `topic write` for publish, `topic read` for subscribe and delivery."""
    lines = ["# rendered by symphony-edge provisioning; edits are overwritten"]
    for account in accounts:
        lines += ["", f"user {account.username}"]
        lines += [f"topic write {topic}" for topic in account.publish]
        lines += [f"topic read {topic}" for topic in account.subscribe]
    return "\n".join(lines) + "\n"


def amqtt_acl(accounts: Iterable[Account]) -> dict[str, dict[str, list[str]]]:
    """The mapping `broker.embedded.TopicACL.load` reads: {publish: {user: [...]}, subscribe: {user: [...]}}."""
    accounts = list(accounts)
    return {
        "publish": {account.username: list(account.publish) for account in accounts},
        "subscribe": {account.username: list(account.subscribe) for account in accounts},
    }
