"""amqtt 0.12 with three faults fixed (imported only where a broker is hosted).

**Retained-message leak.** On every CONNECT, amqtt 0.12.1 sends the new client the retained messages of
*every* topic filter any client has subscribed to (`Broker.client_connected` loops over the broker-wide
`_subscriptions`), so a client that subscribed only to its own reply topic also received every retained beacon
and router presence, past the ACL that checked its subscriptions. Retained messages now go to a session only for
filters it holds itself, which is what the loop meant: a resumed persistent session gets the retained messages
of its own subscriptions.

**Keepalive not enforced.** amqtt's broker-side `handle_read_timeout` does nothing, so a client that froze with
its socket open (a hung board, a cut cable) stayed connected forever and its Will never fired. The broker now
drops a client that sent nothing for 1.5 x its keepalive (MQTT 3.1.1 §3.1.2.10), which publishes its Will.

**Client certificates only optional.** amqtt's TLS listener verifies a client certificate when one is sent but
lets clients without one in (CERT_OPTIONAL); with a CA configured, a certificate is now required.

**Session state changed before authentication.** amqtt 0.12.1 deletes the session of a CONNECT's client id (its
subscriptions) before it checks the password, so one CONNECT with no valid password reusing a live id left that
client connected and deaf. A CONNECT is now authenticated first, and a live client id (or a persistent session's)
may be taken over only by the same account: any other CONNECT gets CONNACK "identifier rejected" and changes
nothing. A same-account takeover also closes the old connection (MQTT 3.1.1 §3.1.4), which amqtt left open.

**Slots held without a CONNECT.** amqtt waits forever for a first packet while the connection holds one of the
listener's `max_connections` slots, so 1,000 silent sockets locked every client out. Each connection now has
`connect_timeout_s` to send its CONNECT, and one source address may hold `unauthenticated_per_address`
connections that have not authenticated; more are closed at once.

**No message size limit.** amqtt reads a packet of any announced length into memory. A packet larger than the
payload limit plus the longest topic is now refused at its header (the connection is closed, as mosquitto does
with `max_packet_size`), and a smaller PUBLISH above `message_size_limit` is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections import Counter
from typing import Any

from amqtt.adapters import ReaderAdapter, StreamReaderAdapter, StreamWriterAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.errors import AMQTTError
from amqtt.mqtt.connack import IDENTIFIER_REJECTED, NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session
from amqtt.utils import gen_client_id

from broker.limits import ConnectionLimits
from shared.errors import SymphonyError

log = logging.getLogger(__name__)

KEEPALIVE_GRACE = 1.5
REFUSAL_LOG_INTERVAL_S = 10.0


class PacketTooLarge(SymphonyError):
    """A packet announced a length above the broker's limit: the connection is closed before it is read."""


class BoundedStreamReader(StreamReaderAdapter):
    """amqtt's TCP reader, refusing any single read above `limit` bytes (a packet body, never a header)."""

    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        super().__init__(reader)
        self.limit = limit

    async def read(self, n: int = -1) -> bytes:
        if n > self.limit:
            raise PacketTooLarge(f"a packet of more than {self.limit} bytes")
        return await super().read(n)


class SymphonyBroker(Broker):
    """amqtt's Broker with the fixes above: retained messages only on the session's own subscriptions, keepalive
    enforced, authentication before any session change, client ids owned by accounts, bounded connects and sizes."""

    def __init__(self, config: dict[str, Any], limits: ConnectionLimits | None = None) -> None:
        super().__init__(config)
        self.limits = limits or ConnectionLimits()
        self._unauthenticated: Counter[str] = Counter()  # source address -> connections not yet authenticated
        self._awaiting_authentication: dict[WriterAdapter, str] = {}
        self._refused: Counter[str] = Counter()  # connections closed per address for being over the cap
        self._refusal_logged: dict[str, float] = {}
        # ids of sessions authenticated here, each asked about once more by amqtt right after (Session is unhashable)
        self._authenticated: set[int] = set()

    # --- before authentication ----------------------------------------------------------------------------

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        bounded = BoundedStreamReader(reader, self.limits.max_packet_bytes)
        await self._client_connected(listener_name, bounded, StreamWriterAdapter(writer))

    async def _client_connected(self, listener_name: str, reader: ReaderAdapter, writer: WriterAdapter) -> None:
        peer = writer.get_peer_info()
        address = peer[0] if peer else "?"
        if self._unauthenticated[address] >= self.limits.unauthenticated_per_address:
            self._log_refusal(address)
            with contextlib.suppress(Exception):
                await writer.close()
            return
        self._unauthenticated[address] += 1
        self._awaiting_authentication[writer] = address
        try:
            await super()._client_connected(listener_name, reader, writer)
        finally:
            self._authentication_over(writer)

    def _log_refusal(self, address: str) -> None:
        """One warning per address every REFUSAL_LOG_INTERVAL_S, with the count (a flood must not flood the log)."""
        self._refused[address] += 1
        now = time.monotonic()
        if now - self._refusal_logged.get(address, -math.inf) >= REFUSAL_LOG_INTERVAL_S:
            self._refusal_logged[address] = now
            log.warning(
                "closing connections from %s: %d of them have not authenticated yet (%d closed so far)",
                address,
                self._unauthenticated[address],
                self._refused[address],
            )

    def _authentication_over(self, writer: WriterAdapter) -> None:
        address = self._awaiting_authentication.pop(writer, None)
        if address is not None:
            self._unauthenticated[address] -= 1
            if self._unauthenticated[address] <= 0:
                del self._unauthenticated[address]

    async def _initialize_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[Any, Any]:
        """Read the CONNECT (within the timeout), authenticate it, check who owns its client id, and only then
        touch any session (amqtt's own version deletes the old session first)."""
        try:
            handler, session = await asyncio.wait_for(
                BrokerProtocolHandler.init_from_connect(reader, writer, self.plugins_manager),
                self.limits.connect_timeout_s,
            )
        except Exception as error:  # whatever a peer sends before CONNECT ends its connection, never the broker
            reason = "no CONNECT in time" if isinstance(error, asyncio.TimeoutError) else repr(error)
            log.info("closed a connection from %s:%s before CONNECT: %s", remote_address, remote_port, reason)
            with contextlib.suppress(Exception):
                await writer.close()
            raise AMQTTError(reason) from None
        refusal = await self._connect_refusal(session)
        self._authentication_over(writer)
        if refusal is not None:
            await _refuse(session, writer, refusal)
            raise AMQTTError(f"CONNECT of {session.client_id!r} from {remote_address} refused ({refusal})")
        session = await self._attach_session(session)
        self._authenticated.add(id(session))
        return self._enforce_keepalive(handler, session)

    async def _connect_refusal(self, session: Session) -> int | None:
        """None to accept; else the CONNACK return code (bad credentials, or a client id of another account)."""
        if not await super()._authenticate(session, None):  # the listener is unused
            return NOT_AUTHORIZED
        owner = self._sessions.get(session.client_id) if session.client_id else None
        if owner is None:
            return None
        live = owner[0].transitions.is_connected()
        if (live or not owner[0].clean_session) and not _same_account(owner[0], session):
            log.warning(
                "refused CONNECT of client id %r by %s: the id belongs to a %s session of another account",
                session.client_id,
                _account(session) or "an anonymous client",
                "live" if live else "persistent",
            )
            return IDENTIFIER_REJECTED
        return None

    async def _attach_session(self, session: Session) -> Session:
        """amqtt's session bookkeeping for an accepted CONNECT (its `_initialize_client_session`, after the
        CONNECT was read), closing the old connection of a clean-session takeover."""
        if session.clean_session:
            if session.client_id:
                previous = self._sessions.get(session.client_id)
                await self._delete_session(session.client_id)
                if previous is not None and previous[0].transitions.is_connected():
                    _drop_silent_client(previous[1])  # the takeover: the old connection ends (its Will fires)
            else:
                session.client_id = gen_client_id()
            session.parent = 0
        elif session.client_id in self._sessions:
            existing, _ = self._sessions[session.client_id]
            for name in ("will_flag", "will_message", "will_topic", "will_qos", "keep_alive", "username", "password"):
                setattr(existing, name, getattr(session, name))
            session = existing
            session.parent = 1
        else:
            session.parent = 0
        return session

    async def _authenticate(self, session: Session, listener: Any) -> bool:
        """Already decided in `_initialize_client_session` (amqtt asks again later, after the bookkeeping)."""
        if id(session) in self._authenticated:
            self._authenticated.discard(id(session))
            return True
        return await super()._authenticate(session, listener)

    def _enforce_keepalive(self, handler: Any, session: Any) -> tuple[Any, Any]:
        if session.keep_alive > 0:
            # The handler's reader waits this long for the next packet, then calls handle_read_timeout.
            session.keep_alive = math.ceil(session.keep_alive * KEEPALIVE_GRACE)
            handler.handle_read_timeout = lambda: _drop_silent_client(handler)
        return handler, session

    async def _broadcast_message(self, session: Any, topic: str | None, data: Any, qos: int | None = None) -> None:
        if data is not None and len(data) > self.limits.message_size_limit:  # a Will, or a PUBLISH below the packet cap
            log.warning("dropped a message of %d bytes on %.200r (message_size_limit)", len(data), topic)
            return
        await super()._broadcast_message(session, topic, data, qos)

    async def retain_message(self, session: Any, topic_name: str | None, data: Any, qos: int | None = None) -> None:
        if data is not None and len(data) > self.limits.message_size_limit:
            return  # dropped with its broadcast above; an older retained message stays
        await super().retain_message(session, topic_name, data, qos)

    @staticmethod
    def _create_ssl_context(listener: Any) -> ssl.SSLContext:
        """amqtt only asks for a client certificate (CERT_OPTIONAL); with a CA configured, require one."""
        context = Broker._create_ssl_context(listener)
        if listener.get("cafile"):
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Any) -> None:
        topic_filter = subscription[0]
        holders = self._subscriptions.get(topic_filter, ())
        if any(holder.client_id == session.client_id for holder, _ in holders):
            await super()._publish_retained_messages_for_subscription(subscription, session)


_closing: set[asyncio.Future[None]] = set()


def _account(session: Session) -> str | None:
    """The account a session authenticated as (None: anonymous, whatever username it claimed)."""
    return None if session.is_anonymous else session.username


def _same_account(owner: Session, newcomer: Session) -> bool:
    return _account(owner) is not None and _account(owner) == _account(newcomer)


async def _refuse(session: Session, writer: WriterAdapter, return_code: int) -> None:
    with contextlib.suppress(Exception):  # the peer may be gone already
        await ConnackPacket.build(0, return_code).to_stream(writer)
    with contextlib.suppress(Exception):
        await writer.close()


def _drop_silent_client(handler: Any) -> None:
    """Treat a keepalive timeout as a lost connection: the broker then publishes the Will and ends the session."""
    closing = asyncio.ensure_future(handler.handle_connection_closed())
    _closing.add(closing)  # held until done (the loop keeps only weak references to tasks)
    closing.add_done_callback(_closing.discard)
