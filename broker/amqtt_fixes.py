"""amqtt 0.12 with its retained-message leak closed (imported only where a broker is hosted).

On every CONNECT, amqtt 0.12.1 sends the new client the retained messages of *every* topic filter any client
has subscribed to (`Broker.client_connected` loops over the broker-wide `_subscriptions`), so a client that
subscribed only to its own reply topic also received every retained beacon and router presence, past the ACL
that checked its subscriptions. Retained messages now go to a session only for filters it holds itself, which
is what the loop meant: a resumed persistent session gets the retained messages of its own subscriptions.
"""

from __future__ import annotations

from typing import Any

from amqtt.broker import Broker


class SymphonyBroker(Broker):
    """amqtt's Broker, sending retained messages only on the session's own subscriptions."""

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Any) -> None:
        topic_filter = subscription[0]
        holders = self._subscriptions.get(topic_filter, ())
        if any(holder.client_id == session.client_id for holder, _ in holders):
            await super()._publish_retained_messages_for_subscription(subscription, session)
