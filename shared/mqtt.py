"""The one MQTT client of the kit (the only module that imports paho-mqtt).

`FabricClient` wraps a paho 2 client (callback API version 2, MQTT 3.1.1) for asyncio code:

- paho runs on the asyncio event loop itself (its socket is watched with add_reader/add_writer, keepalive is a
  task), so a message costs no thread hand-off on the way in or out; only the blocking TCP/TLS connect runs in a
  worker thread. The handler registered for the matching filter runs in the loop (a coroutine becomes a task);
- every (re)connect sets TCP_NODELAY on the socket (without it each request/reply hop waits ~40 ms for Nagle
  and delayed ACKs), re-subscribes every filter and runs the `on_connected` callbacks (beacons re-announce);
- several broker URLs may be given: each lost connection or failed attempt moves to the next URL, after a
  jittered, growing delay; while connected to any but the first, the client probes the first every
  `fail_back_probe_s` (a TCP connect) and, once it answers, disconnects cleanly and goes back to it (fail-back:
  the first URL is the component's own site broker);
- credentials come from the settings and never appear in logs or errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import random
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from shared.config import BrokerURL, ConnectionSettings
from shared.delivery import ClearHandler, Handled, InvalidHandler, subscription
from shared.errors import MessageError, TransportError
from shared.messages import WireModel, encode
from shared.topics import TopicRoute

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], "Awaitable[None] | None"]
ConnectedCallback = Callable[[], "Awaitable[None] | None"]
M = TypeVar("M", bound=WireModel)
MIN_RECONNECT_DELAY_S = 0.2
MAX_RECONNECT_DELAY_S = 5.0
KEEPALIVE_TICK_S = 0.5
RECV_CHUNK = 65536
MAX_READS_PER_WAKEUP = 10_000
RESUBSCRIBE_DELAY_S = 1.0
ROUTE_CACHE_SIZE = 65_536  # topics whose handlers are remembered: a state and a beacon topic per node
MAX_COALESCED_BYTES = 256 * 1024  # written with one send at most (a bigger backlog goes in several)
MAX_FLUSH_DEFERRALS = 8  # loop passes a write waits at most for the work ready before it (see _flush)
MAX_FLUSH_DELAY_S = 0.001  # and seconds: a long burst (a backlog of fleet states) does not hold the writes back


@dataclass(frozen=True)
class WillMessage:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when `topic` matches the subscription filter (MQTT 3.1.1 §4.7: + and # wildcards, $ topics apart)."""
    return topic_filter == topic or _filter_pattern(topic_filter).fullmatch(topic) is not None


@functools.lru_cache(maxsize=1024)
def _filter_pattern(topic_filter: str) -> re.Pattern[str]:
    """The regular expression of a subscription filter (compiled once: a fleet's first messages all miss the
    client's route cache, and a regex matches in C what splitting and comparing levels does in Python)."""
    if topic_filter.startswith("$share/"):  # a shared subscription ($share/{group}/{filter}) matches as its filter
        parts = topic_filter.split("/", 2)
        return _filter_pattern(parts[2]) if len(parts) == 3 else re.compile(r"(?!)")  # (?!): matches nothing
    levels = topic_filter.split("/")
    pattern = ""
    for index, level in enumerate(levels):
        separator = "/" if index else ""
        if level == "#":  # also matches the parent level: a/# matches a
            pattern += f"(?:{separator}.*)?" if index else ".*"
            break
        pattern += separator + ("[^/]*" if level == "+" else re.escape(level))
    if levels[0] in ("+", "#"):  # a wildcard first level never matches a $ topic ($SYS/...)
        pattern = r"(?!\$)" + pattern
    return re.compile(pattern, re.DOTALL)


@dataclass(frozen=True)
class FailBackPolicy:
    """When a client connected to a later broker in its list goes back to the first (pure; unit-tested)."""

    interval_s: float
    url_count: int

    def wanted(self, url_index: int, connected: bool, closing: bool) -> bool:
        """Probe the first broker: enabled, several URLs, connected (else failover is busy), not on the first."""
        return self.interval_s > 0 and self.url_count > 1 and url_index != 0 and connected and not closing

    def next_probe_s(self, rng: random.Random | None = None) -> float:
        """The wait before the next probe, jittered by +-25 % so a fleet does not probe in step."""
        return self.interval_s * (rng or random).uniform(0.75, 1.25)

    def probe_timeout_s(self) -> float:
        return min(2.0, max(0.2, self.interval_s / 2))


_PUBACK_REASON = ReasonCode(PacketTypes.PUBACK)  # "success", as paho reads every MQTT 3.1.1 PUBACK
_PUBACK_PROPERTIES = Properties(PacketTypes.PUBACK)  # none (MQTT 3.1.1 has no properties)


class CoalescingPahoClient(paho.Client):
    """paho, writing every packet queued in one loop pass with one send.

    paho sends each queued packet with its own send(): a routed task's publishes and acknowledgements were a dozen
    system calls in the router alone, each one waking the broker (on loopback the receiver's TCP work runs inside
    the sender's send). Here the packets queued so far are joined and sent at once; what the socket does not take
    stays queued, in order, exactly as paho leaves a partly sent packet. QoS semantics are paho's: a QoS 1 packet
    stays in paho's in-flight table until its PUBACK, whatever the write; a QoS 0 publish is reported sent (its
    message info and `on_publish`) once its last byte is written. A DISCONNECT is written by paho's own writer.
    It also reads an MQTT 3.1.1 PUBACK without paho's per-acknowledgement objects (`_handle_pubackcomp`).
    """

    def _packet_write(self) -> MQTTErrorCode:
        while self._out_packet:
            packets = self._take_coalescible()
            if not packets:  # a DISCONNECT first: paho closes the socket after it
                return super()._packet_write()
            try:
                written = self._sock_send(b"".join(memoryview(p["packet"])[p["pos"] :] for p in packets))
            except (AttributeError, ValueError):
                self._out_packet.extendleft(reversed(packets))
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except BlockingIOError:
                self._out_packet.extendleft(reversed(packets))
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as error:
                self._out_packet.extendleft(reversed(packets))
                log.debug("failed to send on socket: %s", error)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            self._last_msg_out = paho.time_func()
            if not self._account_written(packets, written):
                break  # the socket's buffer is full: the rest waits for it to drain
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _take_coalescible(self) -> list[Any]:
        """The queued packets from the front, up to a DISCONNECT or MAX_COALESCED_BYTES."""
        packets: list[Any] = []
        size = 0
        while self._out_packet and size < MAX_COALESCED_BYTES:
            if self._out_packet[0]["command"] & 0xF0 == paho.DISCONNECT:
                break
            packet = self._out_packet.popleft()
            packets.append(packet)
            size += packet["to_process"]
        return packets

    def _account_written(self, packets: list[Any], written: int) -> bool:
        """Mark what `written` bytes covered; requeue the rest. True when every packet went out whole."""
        for index, packet in enumerate(packets):
            taken = min(written, packet["to_process"])
            written -= taken
            packet["pos"] += taken
            packet["to_process"] -= taken
            if packet["to_process"]:
                self._out_packet.extendleft(reversed(packets[index:]))
                return False
            if packet["command"] & 0xF0 == paho.PUBLISH and packet["qos"] == 0:
                self._qos0_sent(packet)
        return True

    def _qos0_sent(self, packet: Any) -> None:
        """What paho does once a QoS 0 publish is written: `on_publish`, and its message info marked published."""
        with self._callback_mutex:
            on_publish = self.on_publish
        if on_publish is not None:
            with self._in_callback_mutex:  # (callback API version 2: paho types the union of both versions)
                on_publish(self, self._userdata, packet["mid"], _PUBACK_REASON, _PUBACK_PROPERTIES)  # type: ignore[call-arg]
        if packet["info"] is not None:  # paho queues some QoS 0 packets without one (after a CONNACK)
            packet["info"]._set_as_published()

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        """A PUBACK of MQTT 3.1.1 is its message id alone: read it without building the reason code and properties
        objects paho makes for every acknowledgement (MQTT 5 ones; a fifth of a router's inbound work). Anything
        else (PUBCOMP, MQTT 5, a malformed packet) is paho's."""
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or self._protocol != paho.MQTTv311 or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        mid = int.from_bytes(packet, "big")
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, _PUBACK_REASON, _PUBACK_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


class BufferedPahoClient(CoalescingPahoClient):
    """paho, reading what the socket holds in one recv instead of one recv per header byte.

    paho reads a packet as recv(1) for the command, recv(1) per remaining-length byte, then the body: three or
    more system calls per message. Here one recv of up to RECV_CHUNK bytes fills a buffer that those reads are
    served from; the owner keeps calling `loop_read` while `buffered()` (the selector cannot see these bytes).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rx_sock: Any = None
        self._rx = b""  # the last chunk read, served from `_rx_at` on (no copying of what is left)
        self._rx_at = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._sock is not self._rx_sock:  # a new connection: nothing buffered belongs to it
            self._rx_sock, self._rx, self._rx_at = self._sock, b"", 0
        if self._rx_at >= len(self._rx):
            chunk = super()._sock_recv(RECV_CHUNK)  # BlockingIOError when empty, b"" at end of stream
            if not chunk:
                return chunk
            self._rx, self._rx_at = chunk, 0
        start = self._rx_at
        self._rx_at = start + bufsize
        return self._rx[start : self._rx_at]

    def buffered(self) -> bool:
        return self._rx_at < len(self._rx) and self._sock is self._rx_sock and self._sock is not None


def unique_client_id(prefix: str) -> str:
    """`prefix` plus 40 random bits: one id per process, so two processes of one account never take each other's
    session over (the broker keeps one connection per client id), and an id nobody can guess from what the fabric
    prints (router and node ids are in every answer)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class PayloadTooLarge(MessageError):
    """A payload above the client's `max_payload_bytes` (refused before it is sent)."""


class FabricClient:
    """An asyncio-friendly MQTT client for one component (agent node, router, client)."""

    def __init__(
        self,
        settings: ConnectionSettings,
        client_id: str,
        *,
        will: WillMessage | None = None,
        max_payload_bytes: int | None = None,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        # Both ways: a larger payload is refused before sending and dropped on arrival before any decoding.
        self.max_payload_bytes = max_payload_bytes or settings.max_payload_bytes
        self.oversized_dropped = 0
        self._urls = settings.broker_urls()
        self._url_index = 0
        self._attempts = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handlers: dict[str, tuple[int, Handler]] = {}
        self._routes: dict[str, tuple[Handler, ...]] = {}
        self._connected_callbacks: list[ConnectedCallback] = []
        self._connected = asyncio.Event()
        self._first_connect: asyncio.Future[None] | None = None
        self._pending_acks: dict[int, asyncio.Future[None]] = {}
        self._subscribing: dict[int, list[tuple[str, int]]] = {}  # SUBSCRIBE mid -> its filters
        self._tasks: set[asyncio.Future[Any]] = set()
        self._closing = False
        self._connecting: asyncio.Future[Any] | None = None
        self._watched_fd: int | None = None
        self._flush_scheduled = False
        self._flush_deferrals = 0
        self._flush_wanted_at = 0.0
        self._writer_added = False
        self._loop_thread = threading.get_ident()
        self._fail_back = FailBackPolicy(settings.fail_back_probe_s, len(self._urls))
        self._failing_back = False
        self._probing: asyncio.Future[Any] | None = None
        self.connect_count = 0
        self.connected_since: float | None = None  # time.monotonic() of the last successful (re)connect
        self.fail_back_count = 0
        self._paho = self._build_paho(will)

    # --- public API ---------------------------------------------------------------------------------------

    @property
    def broker(self) -> BrokerURL:
        return self._urls[self._url_index]

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    def tcp_nodelay(self) -> bool | None:
        """Whether Nagle's algorithm is off on the current socket (None while disconnected)."""
        sock = self._paho.socket()
        if not isinstance(sock, socket.socket) or sock.fileno() < 0:
            return None
        return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    def on_connected(self, callback: ConnectedCallback) -> None:
        """Run `callback` in the event loop after every successful (re)connect."""
        self._connected_callbacks.append(callback)

    async def connect(self, timeout: float | None = None) -> None:
        """Connect to the first reachable broker and return once the broker accepted us."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._first_connect = self._loop.create_future()
        self._keep(asyncio.ensure_future(self._keepalive_forever()))
        self._start_connecting(delay_s=0.0)
        wait_s = timeout if timeout is not None else self.settings.connect_timeout_s
        try:
            await asyncio.wait_for(asyncio.shield(self._first_connect), wait_s)
        except asyncio.TimeoutError:
            await self.close()
            brokers = ", ".join(str(url) for url in self._urls)
            raise TransportError(f"no broker answered within {wait_s:.0f} s (tried {brokers})") from None
        except TransportError:
            await self.close()
            raise

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Subscribe `handler` to `topic_filter` (at most at the settings' `subscribe_qos`); waits for the broker's
        SUBACK when connected."""
        qos = min(qos, self.settings.subscribe_qos)
        self._handlers[topic_filter] = (qos, handler)
        self._routes.clear()
        if not self.is_connected:
            return  # on_connect subscribes every registered filter
        result, mid = self._paho.subscribe(topic_filter, qos)
        if mid is not None:
            self._subscribing[mid] = [(topic_filter, qos)]
        ack = self._expect_ack(mid) if result == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None else None
        if ack is not None and mid is not None:
            await self._wait_ack(mid, ack, timeout=self.settings.connect_timeout_s)

    async def route(
        self,
        route: TopicRoute[M],
        handler: Callable[[str, M], Handled],
        *,
        on_clear: ClearHandler | None = None,
        on_invalid: InvalidHandler | None = None,
        decoder: Callable[[bytes], M] | None = None,
        qos: int = 1,
    ) -> None:
        """Subscribe `handler` to a route of `shared.topics`: it receives each message decoded, of one of the
        route's kinds; what does not decode or is of another kind is logged and dropped, or handed to
        `on_invalid` (which may answer it); an empty payload on a retained route goes to `on_clear`
        (`shared.delivery`). Unsubscribe with `unsubscribe(route.topic_filter)`."""
        topic_filter, deliver = subscription(route, handler, on_clear=on_clear, on_invalid=on_invalid, decoder=decoder)
        await self.subscribe(topic_filter, deliver, qos)

    async def unsubscribe(self, topic_filter: str) -> None:
        self._handlers.pop(topic_filter, None)
        self._routes.clear()
        if self.is_connected:
            self._paho.unsubscribe(topic_filter)

    def publish(self, topic: str, message: WireModel | bytes, *, qos: int = 1, retain: bool = False) -> int | None:
        """Queue a message for sending (paho keeps QoS 1 messages across reconnects); returns its mid.

        Raises PayloadTooLarge above `max_payload_bytes` (the broker would drop it or disconnect us)."""
        payload = self._bounded(topic, message if isinstance(message, bytes) else encode(message))
        info = self._paho.publish(topic, payload, qos=qos, retain=retain)
        return info.mid

    async def publish_confirmed(
        self,
        topic: str,
        message: WireModel | bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float = 5.0,
    ) -> bool:
        """Publish and wait for the broker's acknowledgement (PUBACK for QoS 1); False on timeout.

        Raises PayloadTooLarge above `max_payload_bytes`."""
        payload = self._bounded(topic, message if isinstance(message, bytes) else encode(message))
        # Registered before this coroutine yields, so an acknowledgement (handed over by `_on_ack` through the
        # event loop) always finds it. While disconnected, paho queues the message and sends it on reconnect.
        info = self._paho.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return True
        ack = self._expect_ack(info.mid)
        return await self._wait_ack(info.mid, ack, timeout)

    async def close(self, final_messages: Sequence[tuple[str, bytes, bool]] = ()) -> None:
        """Publish `final_messages` (topic, payload, retain), then disconnect cleanly."""
        if self._closing:
            return
        self._closing = True
        for topic, payload, retain in final_messages:
            if self.is_connected:
                await self.publish_confirmed(topic, payload, retain=retain, timeout=2.0)
        if self._paho.socket() is not None:
            self._paho.disconnect()
            self._paho.loop_write()  # sends DISCONNECT now; paho then closes the socket (no Will is published)
        self._stop_watching()
        self._connected.clear()
        for task in list(self._tasks):
            task.cancel()

    # --- paho plumbing ------------------------------------------------------------------------------------

    def _build_paho(self, will: WillMessage | None) -> paho.Client:
        client = (BufferedPahoClient if self.settings.buffered_reads else CoalescingPahoClient)(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        if self.settings.username:
            password = self.settings.password.get_secret_value() if self.settings.password else None
            client.username_pw_set(self.settings.username, password)
        if self.broker.scheme == "mqtts":
            self._configure_tls(client)
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        client.on_subscribe = self._on_subscribe
        return client

    def _configure_tls(self, client: paho.Client) -> None:
        tls = self.settings.tls
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls and tls.ca_file else None)
        if tls and tls.cert_file:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        if tls and tls.insecure:
            context.check_hostname = False
        client.tls_set_context(context)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._report_refusal(str(reason))
            return
        sock = client.socket()
        if isinstance(sock, socket.socket):  # TLS sockets are socket.socket subclasses too
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._attempts = 0
        filters = [(topic_filter, qos) for topic_filter, (qos, _) in list(self._handlers.items())]
        mid = client.subscribe(filters)[1] if filters else None
        if mid is not None:
            self._subscribing[mid] = filters
        # Queued before the SUBACK can be handed over, so _handle_connected registers the ack future in time.
        self._call_in_loop(self._handle_connected, mid)

    def _report_refusal(self, reason: str) -> None:
        log.warning("broker %s refused the connection of %s: %s", self.broker, self.client_id, reason)
        self._call_in_loop(self._fail_first_connect, f"broker {self.broker} refused the connection: {reason}")

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._call_in_loop(self._connected.clear)
        if not self._closing:
            log.info("disconnected from %s (%s); reconnecting", self.broker, reason)
            self._call_in_loop(self._start_connecting, self._next_attempt_delay())

    def _next_attempt_delay(self) -> float:
        """Move to the next broker URL; the jittered, growing delay before trying it (none for a fail-back)."""
        if self._failing_back:
            self._failing_back = False
            self._url_index, self._attempts = 0, 0
            return 0.0
        self._attempts += 1
        self._url_index = (self._url_index + 1) % len(self._urls)
        delay = min(MAX_RECONNECT_DELAY_S, MIN_RECONNECT_DELAY_S * 2 ** min(self._attempts, 6))
        return float(delay * random.uniform(0.5, 1.0))

    def _start_connecting(self, delay_s: float) -> None:
        if self._closing or (self._connecting is not None and not self._connecting.done()):
            return
        self._connecting = self._keep(asyncio.ensure_future(self._connect_until_connected(delay_s)))

    async def _connect_until_connected(self, delay_s: float) -> None:
        """Open a TCP (and TLS) connection to the current broker, moving on to the next one on failure.

        The blocking socket connect runs in a worker thread; once it returns, CONNECT is queued and everything
        else (CONNACK, subscriptions) happens on the event loop.
        """
        while not self._closing:
            await asyncio.sleep(delay_s)
            url = self.broker
            self._paho.connect_async(url.host, url.port, keepalive=self.settings.keepalive_s)
            try:
                await asyncio.to_thread(self._paho.reconnect)
            except OSError as error:  # refused, unreachable, TLS failure (ssl.SSLError is an OSError)
                log.info("cannot reach %s: %s", url, error)
                delay_s = self._next_attempt_delay()
                continue
            if self._closing:  # close() ran while we were connecting
                self._paho.disconnect()
                self._paho.loop_write()
            return

    def _bounded(self, topic: str, payload: bytes) -> bytes:
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"payload of {len(payload)} bytes for {topic[:200]!r} is above this client's limit of "
                f"{self.max_payload_bytes} bytes (max_payload_bytes)"
            )
        return payload

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if len(message.payload) > self.max_payload_bytes:  # dropped before any handler decodes it
            self.oversized_dropped += 1
            log.warning(
                "dropped a message of %d bytes on %.200r: above max_payload_bytes (%d)",
                len(message.payload),
                message.topic,
                self.max_payload_bytes,
            )
            return
        self._call_in_loop(self._dispatch, message.topic, message.payload)

    def _on_ack(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        # Only hand over to the event loop: paho calls this holding its message lock, and taking a lock here
        # that the event loop held around paho.publish deadlocked both threads under load.
        self._call_in_loop(self._resolve_ack, mid)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        filters = self._subscribing.pop(mid, [])
        failed = [f for f, reason in zip(filters, reasons, strict=False) if getattr(reason, "is_failure", False)]
        if failed:  # e.g. a NATS cluster re-electing the JetStream leaders behind QoS 1 subscriptions
            log.warning("%s refused subscriptions %s; retrying in %g s", self.broker, failed, RESUBSCRIBE_DELAY_S)
            self._call_in_loop(self._resubscribe_later, failed)
        self._on_ack(client, userdata, mid, reasons, properties)

    def _resubscribe_later(self, filters: list[tuple[str, int]]) -> None:
        if self._loop is not None:
            self._loop.call_later(RESUBSCRIBE_DELAY_S, self._resubscribe, filters)

    def _resubscribe(self, filters: list[tuple[str, int]]) -> None:
        wanted = [(f, qos) for f, qos in filters if f in self._handlers]
        if wanted and self.is_connected and not self._closing:
            mid = self._paho.subscribe(wanted)[1]
            if mid is not None:
                self._subscribing[mid] = wanted

    # --- the socket on the event loop ---------------------------------------------------------------------
    # paho calls these from the loop thread, except while `reconnect` runs in its worker thread: then the
    # registration is handed to the loop (in order, so a socket is always watched before it is written).

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._now_or_in_loop(self._watch, sock)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._now_or_in_loop(self._stop_watching)  # paho closes the socket right after this returns

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._now_or_in_loop(self._want_write, sock)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._now_or_in_loop(self._stop_writing)

    def _watch(self, sock: Any) -> None:
        current = self._paho.socket()
        if self._loop is None or current is None or sock is not current or current.fileno() < 0:
            return  # closed before the loop got to it
        self._stop_watching()
        self._watched_fd = current.fileno()
        self._loop.add_reader(self._watched_fd, self._on_readable)
        if self._paho.want_write():  # queued before the socket was watched (CONNECT, resent messages)
            self._want_write(current)

    def _want_write(self, sock: Any) -> None:
        # Flush once this burst of work has queued its publishes; wait for the socket only when its buffer is full
        # (that saves an epoll registration and a wake-up per burst of messages).
        if self._loop is not None and not self._flush_scheduled and sock is self._paho.socket():
            self._flush_scheduled = True
            self._flush_deferrals = 0
            self._flush_wanted_at = self._loop.time()
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._loop is None or self._watched_fd is None:
            self._flush_scheduled = False
            return
        if (
            self._flush_deferrals < MAX_FLUSH_DEFERRALS
            and self._loop.time() - self._flush_wanted_at < MAX_FLUSH_DELAY_S
            and _has_ready_callbacks(self._loop)
        ):
            self._flush_deferrals += 1  # more work is ready (a task's next step): write after it, with its messages
            self._loop.call_soon(self._flush)
            return
        self._flush_scheduled = False
        self._paho.loop_write()
        if self._paho.want_write() and self._watched_fd is not None and not self._writer_added:
            self._writer_added = True
            self._loop.add_writer(self._watched_fd, self._on_writable)

    def _stop_writing(self) -> None:
        if self._loop is not None and self._watched_fd is not None and self._writer_added:
            self._loop.remove_writer(self._watched_fd)
        self._writer_added = False

    def _stop_watching(self) -> None:
        if self._loop is not None and self._watched_fd is not None:
            self._loop.remove_reader(self._watched_fd)
            self._loop.remove_writer(self._watched_fd)
        self._watched_fd = None
        self._writer_added = False

    def _on_readable(self) -> None:
        self._paho.loop_read()
        sock = self._paho.socket()
        # Our read buffer, and TLS, may hold bytes that the selector cannot see: read them now.
        for _ in range(MAX_READS_PER_WAKEUP):
            if not self._holds_unread(sock):
                return
            self._paho.loop_read()
        if self._holds_unread(sock) and self._loop is not None:  # the rest after the loop's other callbacks
            self._loop.call_soon(self._on_readable)

    def _holds_unread(self, sock: Any) -> bool:
        """Bytes of the current socket already read from the kernel: in our buffer, or decrypted by TLS."""
        if sock is None or self._paho.socket() is not sock:
            return False
        buffered = isinstance(self._paho, BufferedPahoClient) and self._paho.buffered()
        return buffered or (isinstance(sock, ssl.SSLSocket) and sock.pending() > 0)

    def _on_writable(self) -> None:
        self._paho.loop_write()  # unregisters the writer once paho's queue is empty

    async def _keepalive_forever(self) -> None:
        """paho's timers (PINGREQ, a dead connection detected by a missing PINGRESP) run on the loop too."""
        while True:
            await asyncio.sleep(KEEPALIVE_TICK_S)
            if self._paho.socket() is not None:
                self._paho.loop_misc()

    # --- event-loop side ----------------------------------------------------------------------------------

    def _in_loop_thread(self) -> bool:
        return self._loop is not None and threading.get_ident() == self._loop_thread

    def _call_in_loop(self, function: Callable[..., Any], *args: Any) -> None:
        """Run `function` in the loop soon (after the paho call in progress has returned)."""
        if self._loop is None or self._loop.is_closed():
            return
        if self._in_loop_thread():
            self._loop.call_soon(function, *args)
            return
        with contextlib.suppress(RuntimeError):  # loop closed between the check and the call
            self._loop.call_soon_threadsafe(function, *args)

    def _now_or_in_loop(self, function: Callable[..., Any], *args: Any) -> None:
        """Run `function` right away in the loop thread, else hand it to the loop."""
        if self._in_loop_thread():
            function(*args)
        else:
            self._call_in_loop(function, *args)

    def _keep(self, task: asyncio.Future[Any]) -> asyncio.Future[Any]:
        self._tasks.add(task)
        task.add_done_callback(self._task_finished)
        return task

    def _fail_first_connect(self, reason: str) -> None:
        if self._first_connect is not None and not self._first_connect.done():
            self._first_connect.set_exception(TransportError(reason))

    def _handle_connected(self, subscribe_mid: int | None) -> None:
        self.connect_count += 1
        self.connected_since = time.monotonic()  # before any message of this connection is dispatched
        self._connected.set()  # from now on subscribe() sends its own SUBSCRIBE
        log.info("connected to %s as %s", self.broker, self.client_id)
        if self._fail_back.wanted(self._url_index, True, self._closing) and (
            self._probing is None or self._probing.done()
        ):
            self._probing = self._keep(asyncio.ensure_future(self._probe_first_broker()))
        acknowledged = self._expect_ack(subscribe_mid) if subscribe_mid is not None else None
        self._keep(asyncio.ensure_future(self._finish_connect(subscribe_mid, acknowledged)))

    async def _finish_connect(self, mid: int | None, acknowledged: asyncio.Future[None] | None) -> None:
        """Once the broker confirmed every subscription: release connect() and run the on_connected callbacks.

        Waiting for the SUBACK means nothing sent to us right after connect() returns (a task for a router that
        just started, a reply to a client) can arrive before the broker knows our subscriptions.
        """
        timeout = self.settings.connect_timeout_s
        if mid is not None and acknowledged is not None and not await self._wait_ack(mid, acknowledged, timeout):
            log.warning("no SUBACK from %s within %.0f s; continuing", self.broker, timeout)
        if self._first_connect is not None and not self._first_connect.done():
            self._first_connect.set_result(None)
        for callback in self._connected_callbacks:
            self._run_handler(callback)

    async def _probe_first_broker(self) -> None:
        """While on a later broker, try a TCP connect to the first now and then; go back once it answers."""
        first = self._urls[0]
        while self._fail_back.wanted(self._url_index, self.is_connected, self._closing):
            await asyncio.sleep(self._fail_back.next_probe_s())
            if not self._fail_back.wanted(self._url_index, self.is_connected, self._closing):
                return
            if await _answers(first.host, first.port, self._fail_back.probe_timeout_s()):
                self._go_back_to_first()
                return

    def _go_back_to_first(self) -> None:
        if not self._fail_back.wanted(self._url_index, self.is_connected, self._closing):
            return
        log.info("%s answers again; %s moves back to it from %s", self._urls[0], self.client_id, self.broker)
        self.fail_back_count += 1
        self._failing_back = True  # _on_disconnect then reconnects to the first URL at once
        self._paho.disconnect()  # a clean DISCONNECT: the later broker publishes no Will
        self._paho.loop_write()

    def _dispatch(self, topic: str, payload: bytes) -> None:
        for handler in self._handlers_for(topic):
            self._run_handler(handler, topic, payload)

    def _handlers_for(self, topic: str) -> tuple[Handler, ...]:
        """The handlers whose filter matches `topic`, remembered per topic (most topics recur: a fleet's states)."""
        handlers = self._routes.get(topic)
        if handlers is None:
            if len(self._routes) >= ROUTE_CACHE_SIZE:
                self._routes.clear()
            handlers = tuple(handler for f, (_, handler) in self._handlers.items() if topic_matches(f, topic))
            self._routes[topic] = handlers
        return handlers

    def _run_handler(self, handler: Callable[..., Any], *args: Any) -> None:
        # A failing handler must never stop the client or the other handlers, so errors are logged here.
        try:
            result = handler(*args)
        except Exception:
            log.exception("handler %s failed", getattr(handler, "__qualname__", handler))
            return
        if result is not None and inspect.isawaitable(result):
            self._keep(asyncio.ensure_future(result))

    def _task_finished(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("handler task failed", exc_info=task.exception())

    def _resolve_ack(self, mid: int) -> None:
        future = self._pending_acks.pop(mid, None)
        if future is not None:
            _resolve(future)
        self._listen_for_acks()

    def _expect_ack(self, mid: int) -> asyncio.Future[None]:
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        self._pending_acks[mid] = future
        self._listen_for_acks()
        return future

    async def _wait_ack(self, mid: int, future: asyncio.Future[None], timeout: float) -> bool:
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            self._pending_acks.pop(mid, None)
            self._listen_for_acks()
            return False
        return True

    def _listen_for_acks(self) -> None:
        """Hear PUBACKs only while a publish_confirmed waits: paho builds two objects for every callback."""
        wanted = self._on_ack if self._pending_acks else None
        if self._paho.on_publish != wanted:
            self._paho.on_publish = wanted


def _has_ready_callbacks(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether work other than flushes waits in the loop's ready queue (asyncio's own loop keeps its ready
    callbacks in `_ready`; for another loop, False: flush at once). Other clients' flushes do not count, so two
    clients in one loop do not wait for each other."""
    ready = getattr(loop, "_ready", ())
    return bool(ready) and any(getattr(handle._callback, "__func__", None) is not _FLUSH for handle in ready)


_FLUSH = FabricClient._flush


async def _answers(host: str, port: int, timeout: float) -> bool:
    """True when something accepts a TCP connection on host:port within `timeout`."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
