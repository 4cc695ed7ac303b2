"""An answer above the fabric's message size limit reaches the client as an ErrorReply, not as silence."""

from __future__ import annotations

from typing import Any

from router.service import RouterConfig, RouterService
from shared.config import ConnectionSettings
from shared.messages import ErrorReply, TaskAnswer, encode
from shared.mqtt import PayloadTooLarge

LIMIT = 4096


class LimitedClient:
    """Records what is published, refusing payloads above LIMIT as FabricClient does."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []

    def publish(self, topic: str, message: Any, *, qos: int = 1, retain: bool = False) -> None:
        if len(encode(message)) > LIMIT:
            raise PayloadTooLarge(f"payload of {len(encode(message))} bytes is above this client's limit")
        self.published.append((topic, message))


def test_an_oversized_answer_is_replaced_by_an_error_reply() -> None:
    service = RouterService(RouterConfig(router_id="r1", connection=ConnectionSettings(fabric="unit")))
    client = LimitedClient()
    service.client = client  # type: ignore[assignment]
    answer = TaskAnswer(task_id="t1", router_id="r1", answer="x" * (2 * LIMIT), final_text="x")
    service._publish("symphony/unit/reply/alice", answer)
    [(topic, reply)] = client.published
    assert topic == "symphony/unit/reply/alice"
    assert isinstance(reply, ErrorReply) and reply.code == "too_large" and reply.task_id == "t1"
