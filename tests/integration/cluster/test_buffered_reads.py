"""`buffered_reads`: one recv serves many MQTT packets; a burst arrives whole and in order, and reconnects work."""

from __future__ import annotations

import asyncio

import pytest
from integration.reliability.fleet import bounded

from shared.config import ConnectionSettings
from shared.mqtt import FabricClient, unique_client_id

BURST = 500


@pytest.mark.mosquitto
def test_a_buffered_client_receives_a_burst_whole_and_in_order_across_a_broker_restart(mosquitto_broker) -> None:
    url = mosquitto_broker.url
    plain = ConnectionSettings(fabric="buffered", brokers=(url,), keepalive_s=2)
    buffered = plain.model_copy(update={"buffered_reads": True})

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        received: list[bytes] = []
        subscriber = FabricClient(buffered, unique_client_id("buffered"))
        await subscriber.subscribe("symphony/buffered/#", lambda topic, payload: received.append(payload))
        await subscriber.connect()
        sender = FabricClient(plain, unique_client_id("sender"))
        await sender.connect()
        try:
            for number in range(BURST):
                sender.publish(f"symphony/buffered/{number % 7}", str(number).encode(), qos=1)
            for _ in range(100):  # bounded: 10 s
                if len(received) >= BURST:
                    break
                await asyncio.sleep(0.1)
            first = list(received)
            received.clear()
            await asyncio.to_thread(mosquitto_broker.restart)
            await subscriber.wait_connected(15)
            await sender.wait_connected(15)
            await asyncio.sleep(0.5)  # the subscriber re-subscribed on reconnecting
            await sender.publish_confirmed("symphony/buffered/after", b"after", timeout=5.0)
            for _ in range(100):
                if received:
                    break
                await asyncio.sleep(0.1)
            return first, list(received)
        finally:
            await sender.close()
            await subscriber.close()

    first, after = bounded(scenario(), 60)
    assert first == [str(number).encode() for number in range(BURST)]
    assert after == [b"after"]
