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
"""

from __future__ import annotations

import asyncio
import math
import ssl
from typing import Any

from amqtt.broker import Broker

KEEPALIVE_GRACE = 1.5


class SymphonyBroker(Broker):
    """amqtt's Broker, with retained messages sent only on the session's own subscriptions and keepalive enforced."""

    async def _initialize_client_session(self, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        handler, session = await super()._initialize_client_session(*args, **kwargs)
        if session.keep_alive > 0:
            # The handler's reader waits this long for the next packet, then calls handle_read_timeout.
            session.keep_alive = math.ceil(session.keep_alive * KEEPALIVE_GRACE)
            handler.handle_read_timeout = lambda: _drop_silent_client(handler)
        return handler, session

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


def _drop_silent_client(handler: Any) -> None:
    """Treat a keepalive timeout as a lost connection: the broker then publishes the Will and ends the session."""
    closing = asyncio.ensure_future(handler.handle_connection_closed())
    _closing.add(closing)  # held until done (the loop keeps only weak references to tasks)
    closing.add_done_callback(_closing.discard)
