"""`buffered_reads` (the default): one recv serves many MQTT packets; a burst arrives whole and in order, over TCP
and TLS (whose decrypted bytes the selector cannot see), and reconnects work."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from integration.reliability.fleet import bounded
from support import RunningBroker

from broker.mosquitto import MosquittoConfig, find_mosquitto, render_config
from broker.policy import free_port
from provisioning.certificates import issue, new_ca
from shared.config import ConnectionSettings, TLSSettings
from shared.mqtt import FabricClient, unique_client_id

BURST = 500


@pytest.mark.mosquitto
def test_a_buffered_client_receives_a_burst_whole_and_in_order_across_a_broker_restart(mosquitto_broker) -> None:
    url = mosquitto_broker.url
    buffered = ConnectionSettings(fabric="buffered", brokers=(url,), keepalive_s=2)
    assert buffered.buffered_reads  # the default
    plain = buffered.model_copy(update={"buffered_reads": False})

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


def tls_mosquitto(directory: Path) -> tuple[RunningBroker, TLSSettings]:
    """mosquitto with a TLS listener on loopback (server certificate only) and the client's TLS settings."""
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    ca = new_ca("buffered-reads test CA")
    server = issue(ca, "127.0.0.1", names=["127.0.0.1", "localhost"], server=True)
    files = {"ca.crt": ca.certificate, "server.crt": server.certificate, "server.key": server.key}
    for name, content in files.items():
        (directory / name).write_bytes(content)
    port = free_port()
    config = MosquittoConfig(
        port=port,
        allow_anonymous=True,
        ca_file=directory / "ca.crt",
        cert_file=directory / "server.crt",
        key_file=directory / "server.key",
    )
    config_file = directory / "mosquitto-tls.conf"
    config_file.write_text(render_config(config) + ("user root\n" if os.geteuid() == 0 else ""))
    broker = RunningBroker("mosquitto", port, [binary, "-c", str(config_file)])
    return broker, TLSSettings(ca_file=directory / "ca.crt")


@pytest.mark.mosquitto
@pytest.mark.parametrize("buffered_reads", [True, False], ids=["buffered", "paho-reads"])
def test_a_client_over_tls_receives_small_and_large_messages_whole_and_in_order(
    tmp_path: Path, buffered_reads: bool
) -> None:
    """Messages larger than a TLS record (16 KiB): paho's small reads leave decrypted bytes in the SSL socket,
    which the selector cannot see (the client reads them while `pending()`)."""
    broker, tls = tls_mosquitto(tmp_path)
    broker.start()
    settings = ConnectionSettings(
        fabric="buffered",
        brokers=(f"mqtts://127.0.0.1:{broker.port}",),
        tls=tls,
        keepalive_s=2,
        buffered_reads=buffered_reads,
    )
    sizes = [(number * 7919) % 50_000 if number % 5 == 0 else number % 300 for number in range(300)]
    sent = [f"{number}:".encode() + b"x" * size for number, size in enumerate(sizes)]

    async def scenario() -> list[bytes]:
        received: list[bytes] = []
        subscriber = FabricClient(settings, unique_client_id("buffered-tls"))
        await subscriber.subscribe("symphony/buffered/#", lambda topic, payload: received.append(payload))
        await subscriber.connect()
        sender = FabricClient(settings.model_copy(update={"buffered_reads": False}), unique_client_id("sender"))
        await sender.connect()
        try:
            for number, payload in enumerate(sent):
                sender.publish(f"symphony/buffered/{number % 3}", payload, qos=1)
            for _ in range(150):  # bounded: 15 s
                if len(received) >= len(sent):
                    break
                await asyncio.sleep(0.1)
            return list(received)
        finally:
            await sender.close()
            await subscriber.close()

    try:
        received = bounded(scenario(), 60)
    finally:
        broker.stop()
    assert [payload.split(b":")[0] for payload in received] == [str(n).encode() for n in range(len(sent))]
    assert received == sent
