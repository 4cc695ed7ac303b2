"""`connection: {subscribe_qos: 0}` on a NATS cluster: subscriptions that need no JetStream consumer.

On NATS every QoS 1 MQTT subscription is a JetStream consumer replicated on the cluster's servers; when a server
dies, the consumers it led are re-elected one by one and deliver nothing meanwhile. A QoS 0 subscription is a plain
NATS subscription: nothing to re-elect. Here a component subscribed at QoS 0 adds no consumer to the server it is
on, one with the default (QoS 1) adds one, and both get a message published at QoS 1 and a retained one.
"""

from __future__ import annotations

import asyncio

import pytest
from integration.cluster.test_nats_cluster import KEEPALIVE_S, SUBACK_WAIT_S
from integration.reliability.fleet import bounded

from shared.config import ConnectionSettings
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics


@pytest.mark.nats
def test_a_qos0_subscriber_adds_no_jetstream_consumer_and_gets_every_message(nats_cluster, fabric: str) -> None:
    topics = Topics(fabric)

    def settings(**extra: int) -> ConnectionSettings:
        return ConnectionSettings(
            fabric=fabric,
            brokers=(nats_cluster.url(0),),
            keepalive_s=KEEPALIVE_S,
            connect_timeout_s=SUBACK_WAIT_S,
            **extra,
        )

    async def subscriber(connection: ConnectionSettings, prefix: str) -> tuple[FabricClient, asyncio.Queue[str]]:
        received: asyncio.Queue[str] = asyncio.Queue()
        client = FabricClient(connection, unique_client_id(prefix))
        await client.subscribe(topics.beacons(), lambda topic, payload: received.put_nowait(topic))
        await client.connect()
        return client, received

    async def scenario() -> tuple[int, int, int, list[list[str]]]:
        publisher = FabricClient(settings(), unique_client_id("publisher"))
        await publisher.connect()  # the server creates its MQTT streams for the account on the first connection
        assert await publisher.publish_confirmed(topics.beacon("retained-node"), b"kept", retain=True)
        consumers = [nats_cluster.jetstream_consumers(0)]
        plain, plain_inbox = await subscriber(settings(subscribe_qos=0), "plain")
        consumers.append(nats_cluster.jetstream_consumers(0))
        durable, durable_inbox = await subscriber(settings(), "durable")
        consumers.append(nats_cluster.jetstream_consumers(0))
        try:
            assert await publisher.publish_confirmed(topics.beacon("live-node"), b"hello")
            seen = []
            for inbox in (plain_inbox, durable_inbox):
                topics_seen = [await asyncio.wait_for(inbox.get(), 20) for _ in range(2)]
                seen.append(sorted(topics_seen))
            return consumers[0], consumers[1], consumers[2], seen
        finally:
            for client in (plain, durable, publisher):
                await client.close()

    before, with_plain, with_durable, seen = bounded(scenario(), 90)
    assert with_plain == before, "the QoS 0 subscription created a JetStream consumer"
    assert with_durable == before + 1, (before, with_durable)
    wanted = sorted([topics.beacon("retained-node"), topics.beacon("live-node")])
    assert seen == [wanted, wanted]
