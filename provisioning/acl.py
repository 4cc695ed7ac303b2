"""Who may publish and subscribe to what (DESIGN §7), and the two file formats that enforce it.

One `Account` per broker username: a node (its agents, and its router when it hosts one) or a client. The same
rules are rendered as a mosquitto `acl_file` and as the YAML that `broker.embedded.TopicACL.load` reads for
amqtt's topic ACL plugin, so both brokers enforce the same policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broker.bridges import BridgeTopic
from shared.topics import Topics


@dataclass(frozen=True)
class Account:
    """A broker username and the topic filters it may publish to and subscribe to."""

    username: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def node_account(topics: Topics, node_id: str, agent_ids: Iterable[str], router_id: str | None = None) -> Account:
    """A node writes its own beacon/state, results and bids; reads its agents' run topics and bid requests.

    It also reads its own beacon and state: at start it checks that no other live instance uses its node id.
    """
    p = topics.prefix
    publish = [topics.beacon(node_id), topics.state(node_id), f"{p}/router/+/inbox", f"{p}/router/+/bids"]
    subscribe = [topics.beacon(node_id), topics.state(node_id), topics.bid_request(), topics.rebirth()]
    subscribe += [topics.agent_run(agent_id) for agent_id in agent_ids]
    if router_id is not None:
        publish += _router_publish(topics, router_id)
        subscribe += _router_subscribe(topics, router_id)
    return Account(node_id, _unique(publish), _unique(subscribe))


def _router_publish(topics: Topics, router_id: str) -> list[str]:
    p = topics.prefix
    return [
        f"{p}/agent/+/run",
        topics.all_task_events(),
        f"{p}/reply/+",
        topics.router_presence(router_id),
        topics.bid_request(),
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
    ]


def client_account(topics: Topics, client_id: str) -> Account:
    """A client submits tasks and reads only its own replies and the task event streams."""
    return Account(client_id, (topics.task_submit(),), (topics.reply(client_id), topics.all_task_events()))


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
