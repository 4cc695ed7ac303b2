"""What a typed subscription does with a message before its handler sees it (`FabricClient.route`).

    payload ─► empty on a retained route?  ─► on_clear(topic), else dropped (the topic was cleared)
            ─► decode, of the route's kinds ─► handler(topic, message)      (typed: one of the route's kinds)
               └─ malformed or another kind ─► on_invalid(topic, payload, error) where the subscriber answers it
                                               (an `ErrorReply` to the sender), else logged once and dropped

Size and depth limits are `shared.messages.decode`'s, and `FabricClient` drops a payload above its own limit
before any of this runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from shared.errors import MessageError
from shared.messages import WireModel, decode
from shared.topics import TopicRoute

log = logging.getLogger(__name__)

M = TypeVar("M", bound=WireModel)
Handled = Awaitable[None] | None
"""What a handler returns: nothing, or a coroutine the client runs as a task."""
ClearHandler = Callable[[str], Handled]
InvalidHandler = Callable[[str, bytes, MessageError], Handled]


class Subscription(Protocol):
    """A raw handler that knows its filter: a `RouteHandler` of any message type (a component's table of them)."""

    topic_filter: str

    def __call__(self, topic: str, payload: bytes, /) -> Handled: ...


class RouteHandler(Generic[M]):
    """The raw handler of one route: decodes once, checks the kind, then calls the typed handler (see above)."""

    __slots__ = ("decoder", "handler", "kinds", "name", "on_clear", "on_invalid", "retained", "topic_filter")

    def __init__(
        self,
        route: TopicRoute[M],
        handler: Callable[[str, M], Handled],
        on_clear: ClearHandler | None = None,
        on_invalid: InvalidHandler | None = None,
        decoder: Callable[[bytes], M] | None = None,
    ) -> None:
        self.topic_filter = route.topic_filter
        self.handler = handler
        self.kinds = route.kinds
        self.retained = route.retained
        self.name = route.name
        self.on_clear = on_clear
        self.on_invalid = on_invalid
        self.decoder = decoder  # a faster decoder of the route's kind (same checks, same MessageError), if any

    def __call__(self, topic: str, payload: bytes) -> Handled:
        if not payload and self.retained:
            return self.on_clear(topic) if self.on_clear is not None else None
        try:
            message: M = decode(payload, self.kinds) if self.decoder is None else self.decoder(payload)
        except MessageError as error:
            if self.on_invalid is not None:
                return self.on_invalid(topic, payload, error)
            log.info("ignoring a malformed message on %.200r (%s): %s", topic, self.name, error)
            return None
        return self.handler(topic, message)

    def __repr__(self) -> str:  # what FabricClient logs when the handler fails
        return f"{getattr(self.handler, '__qualname__', self.handler)} (route {self.name})"
