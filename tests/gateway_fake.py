"""A fabric for the gateway without a broker: live agents and a router that answers (or fails) every task at once.

The gateway's HTTP side (keys, quotas, limits, error shapes, the fuzzer) is tested against this fake, so those
tests need no broker; the integration tests run the same gateway over real brokers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from fleet_gateway.app import create_app
from fleet_gateway.limits import GatewayLimits
from fleet_gateway.quotas import QuotaBook
from shared.client import TaskFailed, TaskTimeout
from shared.errors import TransportError
from shared.http_auth import Authenticator, ClientAccount, load_keys
from shared.messages import ErrorReply, TaskAnswer, TaskChunk, TaskOptions, TaskRequest

#: A query that makes the fake fabric fail the way a real one can (the word is looked for in the query).
FAILURES = {
    "crash": ErrorReply(
        code="internal_error", message="KeyError: '/var/lib/symphony/router.json' at mqtt://ops:pw@10.0.0.2:1883"
    ),
    "busy": ErrorReply(code="busy", message="every agent is busy"),
    "slow": ErrorReply(code="timeout", message="no answer within the deadline of 5 s"),
}


@dataclass
class FakeTaskClient:
    client_id: str
    sent: list[TaskRequest] = field(default_factory=list)
    hold: threading.Event | None = None  # a test's: tasks stay in flight until it is set

    def request(self, query: str, context: tuple[str, ...] = (), **options: Any) -> TaskRequest:
        return TaskRequest(
            task_id=uuid.uuid4().hex,
            query=query,
            reply_topic=f"symphony/fake/reply/{self.client_id}",
            client_id=self.client_id,
            options=TaskOptions(**options),
            context=context,
        )

    async def stream(self, request: TaskRequest) -> AsyncIterator[TaskChunk | TaskAnswer]:
        self.sent.append(request)
        if self.hold is not None:
            await asyncio.to_thread(self.hold.wait, 30)
        for word, reply in FAILURES.items():
            if word in request.query:
                raise TaskFailed(reply.model_copy(update={"task_id": request.task_id}))
        if "timeout" in request.query:
            raise TaskTimeout(f"no answer to task {request.task_id} within 5 s from mqtt://10.0.0.2:1883")
        if request.options.stream:
            yield TaskChunk(task_id=request.task_id, seq=0, phase="token", text="4")
        yield TaskAnswer(
            task_id=request.task_id,
            router_id="r1",
            answer="42",
            final_text="Final answer: 42",
            prompt_tokens=10,
            completion_tokens=5,
        )


class FakeFabric:
    """Stands in for FabricGateway: one live agent, one router, a task client per account."""

    def __init__(self, deadline_s: float = 120.0, reachable: bool = True) -> None:
        self.deadline_s = deadline_s
        self.reachable = reachable
        self.clients: dict[str | None, FakeTaskClient] = {}
        self.hold: threading.Event | None = None

    def live_agent_ids(self) -> set[str]:
        return {"n1-math"}

    def live_routers(self) -> int:
        return 1

    async def client_for(self, account: ClientAccount | None) -> FakeTaskClient:
        if not self.reachable:
            raise TransportError("cannot connect to mqtt://ops:secret@10.0.0.2:1883: Connection refused")
        name = None if account is None else account.client
        client = self.clients.setdefault(name, FakeTaskClient(name or "gateway"))
        client.hold = self.hold
        return client


def fake_app(
    keys_file: Path | None = None, limits: GatewayLimits | None = None, fabric: FakeFabric | None = None
) -> Any:
    """The gateway's ASGI app over a FakeFabric (anonymous on loopback without a keys file)."""
    auth = Authenticator.for_host("127.0.0.1", load_keys(keys_file) if keys_file else None)
    return create_app(fabric or FakeFabric(), auth, limits, QuotaBook())  # type: ignore[arg-type]


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        started = threading.Event()
        for _ in range(500):
            if server.started:
                started.set()
                break
            threading.Event().wait(0.02)
        assert started.is_set(), "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
