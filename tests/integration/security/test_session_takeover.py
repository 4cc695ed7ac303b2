"""Issue 19.1: a CONNECT reusing a live client id must not take that client's session away.

The attacker knows the victim's client id (router and node ids are printed in every answer; here the victim uses a
fixed id, as an application might) and sends CONNECTs on raw sockets: with a wrong password, anonymous, and (on
the embedded broker) with another account's valid password. The victim must keep every subscription: replies
published after the attack all reach it.

Before the fix, on the embedded broker, one CONNECT with a wrong password deleted the victim's subscriptions
before the password was checked: 0 of 3 replies arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from integration.security.attack import (
    CONNACK_ACCEPTED,
    CONNACK_IDENTIFIER_REJECTED,
    PahoPeer,
    bounded,
    connect_packet,
    provisioned_broker,
    provisioned_fleet,
    raw_connect,
)
from support import RunningBroker, connection_for

from shared.client import FabricTaskClient
from shared.config import ConnectionSettings
from shared.messages import TaskAnswer
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

VICTIM_ID = "alice-app-1"
REPLIES = 3


async def replies_after_attack(
    victim_settings: ConnectionSettings, sender_settings: ConnectionSettings, attack: list[bytes], port: int
) -> tuple[int, list[int | None]]:
    """Connect the victim (subscribed to its reply topic), run the raw CONNECTs of `attack`, then publish
    REPLIES replies: how many reached the victim, and the CONNACK code each attacking CONNECT got."""
    topics = Topics(victim_settings.fabric)
    reply_topic = topics.reply(victim_settings.username or "anonymous")
    received: list[bytes] = []
    all_arrived = asyncio.Event()

    def on_reply(topic: str, payload: bytes) -> None:
        received.append(payload)
        if len(received) >= REPLIES:
            all_arrived.set()

    victim = FabricClient(victim_settings, VICTIM_ID)
    await victim.subscribe(reply_topic, on_reply)
    await victim.connect()
    sender = FabricClient(sender_settings, unique_client_id("router-sender"))
    await sender.connect()
    try:
        codes = [await asyncio.to_thread(raw_connect, port, packet) for packet in attack]
        for index in range(REPLIES):
            answer = TaskAnswer(task_id=f"t{index}", router_id="r1", answer="42", final_text="42")
            assert await sender.publish_confirmed(reply_topic, answer)
        with contextlib.suppress(asyncio.TimeoutError):  # what arrived is counted below
            await asyncio.wait_for(all_arrived.wait(), 10.0)
        return len(received), codes
    finally:
        await sender.close()
        await victim.close()


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_connect_without_valid_password_leaves_the_live_session_alone(kind: str, tmp_path: Path, fabric: str):
    with provisioned_broker(kind, tmp_path, fabric) as fleet:
        attack = [
            connect_packet(VICTIM_ID, "alice", "not-the-password"),
            connect_packet(VICTIM_ID),  # anonymous
            connect_packet(VICTIM_ID, "mallory", "guess"),  # no such account
        ]
        received, codes = bounded(
            replies_after_attack(fleet.connection("alice"), fleet.connection("hub"), attack, fleet.port), 60
        )
    print(f"\n[{kind}] replies after {len(attack)} unauthenticated CONNECTs: {received}/{REPLIES}; CONNACKs {codes}")
    assert all(code != CONNACK_ACCEPTED for code in codes), codes
    assert received == REPLIES, f"the victim lost its subscriptions: {received}/{REPLIES} replies"


def test_another_account_cannot_take_a_live_client_id_on_the_embedded_broker(tmp_path: Path, fabric: str):
    """bob holds a valid password, but the id belongs to alice's live connection: refused, alice keeps it.

    (mosquitto lets any authenticated account take over an id; there every component's id carries 40 random bits,
    see docs/threat-model-broker.md.)"""
    with provisioned_broker("amqtt", tmp_path, fabric) as fleet:
        attack = [connect_packet(VICTIM_ID, "bob", fleet.password("bob"))]
        received, codes = bounded(
            replies_after_attack(fleet.connection("alice"), fleet.connection("hub"), attack, fleet.port), 60
        )
    assert codes == [CONNACK_IDENTIFIER_REJECTED], codes
    assert received == REPLIES, f"{received}/{REPLIES}"


def test_an_anonymous_client_cannot_take_a_live_client_id_on_the_embedded_broker(
    amqtt_broker: RunningBroker, fabric: str
):
    """On loopback without passwords nobody proves who they are, so nobody takes over a live id."""
    settings = connection_for(amqtt_broker, fabric)
    received, codes = bounded(
        replies_after_attack(settings, settings, [connect_packet(VICTIM_ID)], amqtt_broker.port), 60
    )
    assert codes == [CONNACK_IDENTIFIER_REJECTED], codes
    assert received == REPLIES, f"{received}/{REPLIES}"


def test_the_same_account_still_takes_its_id_over_and_the_old_connection_is_closed(tmp_path: Path, fabric: str):
    """A board that restarts before the broker noticed its old connection died reconnects with its own account."""
    with provisioned_broker("amqtt", tmp_path, fabric) as fleet:
        old = PahoPeer(fleet.port, client_id=VICTIM_ID, username="alice", password=fleet.password("alice"))
        assert old.start() == CONNACK_ACCEPTED
        old.client.reconnect_delay_set(30, 60)  # no reconnect during the test: we count the broker's close
        try:
            code = raw_connect(fleet.port, connect_packet(VICTIM_ID, "alice", fleet.password("alice")))
            closed = _wait_for(lambda: old.disconnects > 0, 10.0)
        finally:
            old.stop()
    assert code == CONNACK_ACCEPTED
    assert closed, "the broker left the old connection of a taken-over id open"


def _wait_for(condition: object, timeout_s: float) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_a_second_account_using_the_printed_router_and_node_ids_disturbs_nothing(
    kind: str, tmp_path: Path, fabric: str
):
    """Router and node ids are printed in every answer; their MQTT client ids used to be `router-<id>` and
    `node-<id>`, so bob (a valid client account) could take them over: on the embedded broker the router went deaf,
    on mosquitto (which lets any account take an id over) it was kicked off for as long as bob stayed. Client ids
    now carry 40 random bits per process."""
    with provisioned_fleet(kind, tmp_path, fabric) as (fleet, processes):
        squatters = [
            PahoPeer(fleet.port, client_id=client_id, username="bob", password=fleet.password("bob"))
            for client_id in ("router-hub", "node-node-a")
        ]
        try:
            codes = [squatter.start() for squatter in squatters]
            answered = bounded(_answered(fleet.connection("alice"), 3), 120)
        finally:
            for squatter in squatters:
                squatter.stop()
        reconnects = processes.log("hub").count("disconnected from") + processes.log("node-a").count(
            "disconnected from"
        )
    print(f"\n[{kind}] bob on the old router/node ids (CONNACK {codes}): {answered}/3 answered, {reconnects} drops")
    assert answered == 3 and reconnects == 0


async def _answered(connection: ConnectionSettings, count: int) -> int:
    async with FabricTaskClient(connection) as client:
        replies = [await client.submit(f"What is {n} + 3?", cot_count=1, timeout_s=20) for n in range(count)]
    return sum(bool(reply.answer) for reply in replies)
