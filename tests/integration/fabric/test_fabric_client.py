"""FabricClient against real brokers (amqtt in its own process, mosquitto): retained, Will, reconnect, auth."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from support import REPO, RunningBroker, amqtt_command, connection_for, mosquitto_command

from broker.mosquitto import MosquittoConfig
from broker.policy import free_port
from shared.config import ConnectionSettings
from shared.errors import TransportError
from shared.messages import ErrorReply, NodeBeacon, decode, encode
from shared.mqtt import FabricClient, WillMessage, unique_client_id
from shared.topics import Topics

T = TypeVar("T")
WAIT_S = 10.0


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run one test scenario with an overall bound, so a hang fails instead of stalling the suite."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


class Inbox:
    """A subscription handler that queues (topic, payload) for the test to await."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    def __call__(self, topic: str, payload: bytes) -> None:
        self.queue.put_nowait((topic, payload))

    async def next(self, timeout: float = WAIT_S) -> tuple[str, bytes]:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def nothing_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.queue.get(), seconds)
        except asyncio.TimeoutError:
            return True
        return False


async def connected(settings: ConnectionSettings, prefix: str, **options: Any) -> FabricClient:
    client = FabricClient(settings, unique_client_id(prefix), **options)
    await client.connect(timeout=WAIT_S)
    return client


def test_a_retained_message_reaches_a_late_subscriber(any_broker: RunningBroker, fabric: str) -> None:
    settings = connection_for(any_broker, fabric)
    topic = Topics(fabric).router_presence("r1")
    message = ErrorReply(code="busy", message="still here")

    async def scenario() -> None:
        publisher = await connected(settings, "pub")
        assert await publisher.publish_confirmed(topic, message, retain=True)
        await publisher.close()
        late = await connected(settings, "late")
        inbox = Inbox()
        await late.subscribe(Topics(fabric).router_presences(), inbox)
        received_topic, payload = await inbox.next()
        assert received_topic == topic
        assert decode(payload) == message
        await late.close()

    run(scenario())


def test_a_plain_message_is_not_retained(any_broker: RunningBroker, fabric: str) -> None:
    settings = connection_for(any_broker, fabric)
    topic = Topics(fabric).router_presence("r1")

    async def scenario() -> None:
        publisher = await connected(settings, "pub")
        assert await publisher.publish_confirmed(topic, ErrorReply(code="busy", message="gone"))
        late = await connected(settings, "late")
        inbox = Inbox()
        await late.subscribe(topic, inbox)
        assert await publisher.publish_confirmed(topic, ErrorReply(code="busy", message="live"))
        _, payload = await inbox.next()
        assert decode(payload).message == "live"  # the earlier, unretained message never arrived
        await late.close()
        await publisher.close()

    run(scenario())


def test_a_new_client_gets_only_the_retained_messages_it_subscribed_to(any_broker: RunningBroker, fabric: str) -> None:
    """amqtt 0.12 sent a connecting client the retained messages of every filter any client had subscribed to."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    settings = connection_for(any_broker, fabric)
    topics = Topics(fabric)
    own_topic = topics.reply("late-client")
    received: list[str] = []
    subscribed = threading.Event()

    async def scenario() -> None:
        watcher = await connected(settings, "watcher")
        await watcher.subscribe(topics.router_presences(), Inbox())  # someone else's filter that matches
        publisher = await connected(settings, "pub")
        assert await publisher.publish_confirmed(
            topics.router_presence("r1"), ErrorReply(code="busy", message="m"), retain=True
        )
        assert await publisher.publish_confirmed(own_topic, ErrorReply(code="busy", message="mine"), retain=True)

        late = paho.Client(CallbackAPIVersion.VERSION2, client_id=unique_client_id("late"), protocol=paho.MQTTv311)
        late.on_message = lambda client, userdata, message: received.append(message.topic)
        late.on_subscribe = lambda *args: subscribed.set()
        late.on_connect = lambda client, *args: client.subscribe(own_topic, 1)
        late.connect("127.0.0.1", any_broker.port)
        late.loop_start()
        try:
            assert await asyncio.to_thread(subscribed.wait, WAIT_S)
            await asyncio.sleep(1.0)  # the leaked retained messages came right after CONNACK
        finally:
            late.disconnect()
            late.loop_stop()
        await publisher.close()
        await watcher.close()

    run(scenario())
    assert received == [own_topic]


WILL_CLIENT = textwrap.dedent(
    """
    import asyncio, sys
    from shared.config import ConnectionSettings
    from shared.mqtt import FabricClient, WillMessage

    async def main() -> None:
        url, topic, payload = sys.argv[1], sys.argv[2], sys.argv[3].encode()
        settings = ConnectionSettings(brokers=(url,), keepalive_s=2)
        client = FabricClient(settings, "will-client", will=WillMessage(topic, payload))
        await client.connect(timeout=10)
        print("connected", flush=True)
        await asyncio.sleep(120)

    asyncio.run(main())
    """
)


def test_the_will_is_published_retained_when_a_client_process_is_killed(any_broker: RunningBroker, fabric: str) -> None:
    settings = connection_for(any_broker, fabric)
    topic = Topics(fabric).beacon("victim")
    will = NodeBeacon(node_id="victim", epoch=42, instance_id="i1", status="offline")
    child = subprocess.Popen(
        [sys.executable, "-c", WILL_CLIENT, any_broker.url, topic, encode(will).decode()],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "connected", child.stderr.read() if child.stderr else ""

        async def scenario() -> None:
            watcher = await connected(settings, "watch")
            inbox = Inbox()
            await watcher.subscribe(topic, inbox)
            assert await inbox.nothing_within(0.5)  # no Will while the client lives
            child.send_signal(signal.SIGKILL)
            _, payload = await inbox.next(timeout=3 * settings.keepalive_s + 2)
            assert decode(payload, NodeBeacon) == will
            await watcher.close()
            late = await connected(settings, "late")  # the Will was published retained
            late_inbox = Inbox()
            await late.subscribe(topic, late_inbox)
            _, payload = await late_inbox.next()
            assert decode(payload, NodeBeacon) == will
            await late.close()

        run(scenario())
    finally:
        child.kill()
        child.communicate(timeout=10)  # also closes the pipes


def test_a_clean_close_does_not_publish_the_will(any_broker: RunningBroker, fabric: str) -> None:
    settings = connection_for(any_broker, fabric)
    topic = Topics(fabric).beacon("polite")

    async def scenario() -> None:
        watcher = await connected(settings, "watch")
        inbox = Inbox()
        await watcher.subscribe(topic, inbox)
        client = await connected(settings, "polite", will=WillMessage(topic, b"will"))
        await client.close(final_messages=[(topic, b"goodbye", True)])
        _, payload = await inbox.next()
        assert payload == b"goodbye"
        assert await inbox.nothing_within(1.0)  # a Will would follow the socket close at once
        await watcher.close()

    run(scenario())


def test_the_client_reconnects_and_resubscribes_after_a_broker_restart(any_broker: RunningBroker, fabric: str) -> None:
    settings = connection_for(any_broker, fabric)
    topic = Topics(fabric).reply("survivor")

    async def scenario() -> None:
        connects = asyncio.Queue[int]()
        client = FabricClient(settings, unique_client_id("survivor"))
        client.on_connected(lambda: connects.put_nowait(1))
        inbox = Inbox()
        await client.subscribe(topic, inbox)
        await client.connect(timeout=WAIT_S)
        await asyncio.wait_for(connects.get(), WAIT_S)

        await asyncio.to_thread(any_broker.restart)
        await asyncio.wait_for(connects.get(), 30)  # on_connected ran again, without any help from the test
        assert client.is_connected

        publisher = await connected(settings, "pub")
        # The SUBACK of the automatic re-subscription may still be in flight: publish until one arrives.
        payload = b""
        for attempt in range(20):
            assert await publisher.publish_confirmed(topic, f"after-restart-{attempt}".encode())
            try:
                _, payload = await inbox.next(timeout=0.5)
                break
            except asyncio.TimeoutError:
                continue
        assert payload.startswith(b"after-restart-")
        await publisher.close()
        await client.close()

    run(scenario(), timeout=90)


def test_tcp_nodelay_is_set_after_connect_and_after_every_reconnect(any_broker: RunningBroker, fabric: str) -> None:
    settings = connection_for(any_broker, fabric)

    async def scenario() -> None:
        connects = asyncio.Queue[int]()
        client = FabricClient(settings, unique_client_id("nagle"))
        client.on_connected(lambda: connects.put_nowait(1))
        await client.connect(timeout=WAIT_S)
        await asyncio.wait_for(connects.get(), WAIT_S)
        assert client.tcp_nodelay() is True
        await asyncio.to_thread(any_broker.restart)
        await asyncio.wait_for(connects.get(), 30)
        assert client.tcp_nodelay() is True  # a new socket, set again
        await client.close()
        assert client.tcp_nodelay() is None

    run(scenario(), timeout=90)


# --- authentication ---------------------------------------------------------------------------------------

USER, PASSWORD = "board-7", "correct horse battery staple"


def amqtt_password_file(path: Path) -> None:
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    path.write_text(f"{USER}:{PasswordHash((Argon2Hasher(),)).hash(PASSWORD)}\n")


def mosquitto_password_file(path: Path) -> None:
    binary = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(binary).exists():
        pytest.skip("mosquitto_passwd is not installed")
    subprocess.run([binary, "-b", "-c", str(path), USER, PASSWORD], check=True, capture_output=True, timeout=30)
    if os.geteuid() == 0:  # mosquitto started as root drops to the mosquitto user, which must read the file
        with contextlib.suppress(KeyError):
            account = pwd.getpwnam("mosquitto")
            os.chown(path, account.pw_uid, account.pw_gid)


@pytest.fixture(params=["amqtt", "mosquitto"])
def protected_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningBroker]:
    """A broker on loopback that requires the password of USER."""
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="symphony-auth-"))  # pytest's tmp dirs are private to their owner
    folder.chmod(0o711)
    password_file = folder / "passwords"
    if request.param == "amqtt":
        amqtt_password_file(password_file)
        command = amqtt_command(port, "--password-file", str(password_file))
    else:
        mosquitto_password_file(password_file)
        config = MosquittoConfig(host="127.0.0.1", port=port, password_file=password_file)
        command = mosquitto_command(tmp_path, port, config)
    broker = RunningBroker(request.param, port, command)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def credentials(broker: RunningBroker, fabric: str, username: str | None, password: str | None) -> ConnectionSettings:
    return connection_for(broker, fabric, username=username, password=password, connect_timeout_s=WAIT_S)


def test_the_right_password_is_accepted(protected_broker: RunningBroker, fabric: str) -> None:
    async def scenario() -> None:
        client = await connected(credentials(protected_broker, fabric, USER, PASSWORD), "ok")
        assert client.is_connected
        await client.close()

    run(scenario())


@pytest.mark.parametrize(
    ("username", "password"),
    [(USER, "wrong password"), ("stranger", PASSWORD), (None, None)],
    ids=["wrong-password", "unknown-user", "anonymous"],
)
def test_bad_credentials_are_refused_with_transport_error(
    protected_broker: RunningBroker, fabric: str, username: str | None, password: str | None
) -> None:
    async def scenario() -> None:
        client = FabricClient(credentials(protected_broker, fabric, username, password), unique_client_id("bad"))
        with pytest.raises(TransportError) as raised:
            await client.connect(timeout=WAIT_S)
        assert not client.is_connected
        if password:
            assert password not in str(raised.value)

    run(scenario())


# --- the broker command -------------------------------------------------------------------------------------


def edge_agent(*arguments: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("kind", [[], ["--mosquitto"]], ids=["amqtt", "mosquitto"])
def test_broker_off_loopback_without_a_password_file_is_refused(kind: list[str]) -> None:
    result = edge_agent("broker", *kind, "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode != 0
    assert "password file" in result.stderr
    assert "--allow-anonymous" in result.stderr
    assert "Traceback" not in result.stderr


def test_broker_mosquitto_render_only_writes_a_working_config(tmp_path: Path, fabric: str) -> None:
    port = free_port()
    config_file = tmp_path / "rendered.conf"
    result = edge_agent("broker", "--mosquitto", "--port", str(port), "--render-only", str(config_file))
    assert result.returncode == 0, result.stderr
    text = config_file.read_text()
    assert f"listener {port} 127.0.0.1" in text
    assert "set_tcp_nodelay true" in text
    assert "max_queued_messages 0" in text
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("mosquitto is not installed")
    broker = RunningBroker("mosquitto", port, [binary, "-c", str(config_file)])
    broker.start()
    try:

        async def scenario() -> None:
            client = await connected(connection_for(broker, fabric), "rendered")
            assert await client.publish_confirmed(Topics(fabric).task_submit(), b"{}")
            await client.close()

        run(scenario())
    finally:
        broker.stop()
