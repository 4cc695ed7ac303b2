"""FabricClient.publish_confirmed under concurrency and while the broker is down (issue 7, found by 7.1/7.2)."""

from __future__ import annotations

import asyncio

from integration.reliability.fleet import bounded
from support import RunningBroker, connection_for

from shared.mqtt import FabricClient, unique_client_id

PUBLISHES = 5000


def test_many_concurrent_confirmed_publishes_all_complete(mosquitto_broker: RunningBroker, fabric: str):
    """paho acks in its thread while the event loop publishes: the two used to deadlock (lock inversion)."""

    async def scenario() -> list[bool]:
        client = FabricClient(connection_for(mosquitto_broker, fabric), unique_client_id("storm"))
        await client.connect()
        try:
            topic = f"symphony/{fabric}/storm"
            return await asyncio.gather(*(client.publish_confirmed(topic, b"x" * 64) for _ in range(PUBLISHES)))
        finally:
            await client.close()

    acknowledged = bounded(scenario(), 60)
    assert all(acknowledged) and len(acknowledged) == PUBLISHES


def test_confirmed_publish_while_the_broker_is_down_completes_after_it_returns(
    mosquitto_broker: RunningBroker, fabric: str
):
    async def scenario() -> bool:
        client = FabricClient(connection_for(mosquitto_broker, fabric), unique_client_id("offline"))
        await client.connect()
        try:
            mosquitto_broker.stop()
            await asyncio.sleep(0.5)
            pending = asyncio.ensure_future(client.publish_confirmed(f"symphony/{fabric}/x", b"1", timeout=20.0))
            await asyncio.sleep(0.5)
            await asyncio.to_thread(mosquitto_broker.start)
            return await pending
        finally:
            await client.close()

    assert bounded(scenario(), 60) is True
