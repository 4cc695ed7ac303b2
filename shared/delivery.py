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
from typing import TypeVar

from shared.errors import MessageError
from shared.messages import WireModel, decode
from shared.topics import TopicRoute

log = logging.getLogger(__name__)

M = TypeVar("M", bound=WireModel)
Handled = Awaitable[None] | None
"""What a handler returns: nothing, or a coroutine the client runs as a task."""
ClearHandler = Callable[[str], Handled]
InvalidHandler = Callable[[str, bytes, MessageError], Handled]


RawHandler = Callable[[str, bytes], Handled]
"""What `FabricClient.subscribe` takes: the topic and the payload's bytes."""


def subscription(
    route: TopicRoute[M],
    handler: Callable[[str, M], Handled],
    *,
    on_clear: ClearHandler | None = None,
    on_invalid: InvalidHandler | None = None,
    decoder: Callable[[bytes], M] | None = None,
) -> tuple[str, RawHandler]:
    """The filter of `route` and its raw handler, which decodes once, checks the kind and calls `handler` (see
    above). `decoder` replaces `decode` for a route of one kind (it must check as much and raise `MessageError`).

    A closure, not an object with `__call__`: it runs for every message, and a plain function call is cheaper."""
    kinds, retained, name = route.kinds, route.retained, route.name

    def deliver(topic: str, payload: bytes) -> Handled:
        if not payload and retained:
            return on_clear(topic) if on_clear is not None else None
        try:
            message: M = decode(payload, kinds) if decoder is None else decoder(payload)
        except MessageError as error:
            if on_invalid is not None:
                return on_invalid(topic, payload, error)
            log.info("ignoring a malformed message on %.200r (%s): %s", topic, name, error)
            return None
        return handler(topic, message)

    deliver.__qualname__ = f"{getattr(handler, '__qualname__', 'handler')} (route {name})"  # FabricClient logs it
    return route.topic_filter, deliver
