"""A small client for applications: submit a question to the fabric and await the voted answer.

    async with FabricTaskClient(ConnectionSettings(brokers=("mqtt://127.0.0.1:1883",))) as client:
        answer = await client.submit("What is 17 * 3?", cot_count=3)
        print(answer.answer)

Unanswered tasks are resent under the same task id (routers answer each id once), so a router that dies
mid-task is replaced by the next owner without the application doing anything.

`stream` yields the task's TaskChunks as they come (the tokens of a single run, or the progress of a vote), then
the TaskAnswer; leaving the loop early tells the router (TaskCancel), which stops the task's runs on their agents.

Tasks go out on `task/submit/{client}`; the client id is the account's username when it has one (the broker lets
an account write only its own submit topic), else a fresh `client-...` name on an anonymous fabric.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from shared import topics as routes
from shared.config import ConnectionSettings
from shared.errors import SymphonyError
from shared.messages import (
    ErrorReply,
    TaskAnswer,
    TaskCancel,
    TaskChunk,
    TaskEvent,
    TaskOptions,
    TaskRequest,
)
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

EventCallback = Callable[[TaskEvent], None]


class TaskFailed(SymphonyError):
    """The fabric answered the task with an ErrorReply."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(f"{reply.code}: {reply.message}")
        self.reply = reply


class TaskTimeout(SymphonyError):
    """No answer arrived within the client's timeout."""


class FabricTaskClient:
    """Submits TaskRequests and matches replies by task id."""

    def __init__(self, connection: ConnectionSettings, client_id: str | None = None) -> None:
        # A provisioned client account may read only reply/<its username>, so that is its id by default.
        self.client_id = client_id or connection.username or unique_client_id("client")
        self.topics = Topics(connection.fabric)
        self.reply_topic = self.topics.reply(self.client_id)
        # The account is in the topic (the broker binds it to the login): the router answers on reply/<account>.
        # Processes sharing an account share that reply topic; each picks its own replies by task id.
        self.submit_topic = self.topics.client_task_submit(self.client_id)
        # The MQTT client id is this process's own: processes sharing an account (the gateway and `submit`) each
        # keep their session, where one id would have the broker drop one of them.
        self._mqtt = FabricClient(connection, unique_client_id(self.client_id))
        self._site = connection.site  # the tasks' site: its routers own them and prefer its agents
        self._waiting: dict[str, asyncio.Future[TaskAnswer | ErrorReply]] = {}
        self._streams: dict[str, asyncio.Queue[TaskChunk | TaskAnswer | ErrorReply]] = {}
        self._event_callbacks: dict[str, EventCallback] = {}

    async def __aenter__(self) -> FabricTaskClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        await self._mqtt.route(routes.REPLY.on(self.topics, self.client_id), self._on_reply)
        await self._mqtt.connect()

    async def close(self) -> None:
        await self._mqtt.close()

    async def submit(
        self,
        query: str,
        *,
        task_id: str | None = None,
        requirements: tuple[str, ...] = (),
        context: tuple[str, ...] = (),
        timeout_s: float | None = None,
        resend_every_s: float = 10.0,
        on_event: EventCallback | None = None,
        **options: Any,
    ) -> TaskAnswer:
        """Submit `query` and return the TaskAnswer; raises TaskFailed on an ErrorReply, TaskTimeout.

        A caller that follows the task's events (`on_event`) gets its full trace unless it asks otherwise (`trace`).
        """
        if on_event is not None:
            options.setdefault("trace", "full")
        request = self.request(query, task_id, requirements, context, **options)
        timeout = timeout_s or request.options.deadline_s + 5
        reply = await self.submit_request(request, timeout, resend_every_s, on_event)
        if isinstance(reply, ErrorReply):
            raise TaskFailed(reply)
        return reply

    def request(
        self,
        query: str,
        task_id: str | None = None,
        requirements: tuple[str, ...] = (),
        context: tuple[str, ...] = (),
        **options: Any,
    ) -> TaskRequest:
        """The TaskRequest for `query` from this client (options are TaskOptions fields)."""
        return TaskRequest(
            task_id=task_id or uuid.uuid4().hex,
            query=query,
            requirements=requirements,
            reply_topic=self.reply_topic,
            client_id=self.client_id,
            options=TaskOptions(**options),
            context=context,
            sent_at=time.time(),
            site=self._site,
        )

    async def stream(
        self, request: TaskRequest, timeout_s: float | None = None, resend_every_s: float = 10.0
    ) -> AsyncIterator[TaskChunk | TaskAnswer]:
        """Submit `request` and yield its TaskChunks in order (when it asks for a stream), then its TaskAnswer.

        Raises TaskFailed on an ErrorReply and TaskTimeout past `timeout_s` (default: the task's deadline + 5 s).
        Leaving the loop before the answer (break, cancellation) sends a TaskCancel: the router stops the task.
        """
        deadline = time.monotonic() + (timeout_s or request.options.deadline_s + 5)
        queue: asyncio.Queue[TaskChunk | TaskAnswer | ErrorReply] = asyncio.Queue()
        self._streams[request.task_id] = queue
        answered, next_seq, resend_at = False, 0, 0.0
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise TaskTimeout(f"no answer to task {request.task_id} in time")
                if next_seq == 0 and now >= resend_at:  # resent until something arrives (a router may have died)
                    await self._mqtt.publish_confirmed(self.submit_topic, request, timeout=5.0)
                    resend_at = now + resend_every_s
                try:
                    wait = min(deadline, resend_at) - now if next_seq == 0 else deadline - now
                    message = await asyncio.wait_for(queue.get(), max(0.0, wait))
                except asyncio.TimeoutError:
                    continue
                if isinstance(message, ErrorReply):
                    answered = True
                    raise TaskFailed(message)
                if isinstance(message, TaskAnswer):
                    answered = True
                    yield message
                    return
                if message.seq < next_seq:
                    continue  # a duplicate delivery
                next_seq = message.seq + 1
                yield message
        finally:
            self._streams.pop(request.task_id, None)
            if not answered and self._mqtt.is_connected:
                cancel = TaskCancel(task_id=request.task_id, client_id=self.client_id, reason="the client went away")
                self._mqtt.publish(self.submit_topic, cancel)

    async def submit_request(
        self,
        request: TaskRequest,
        timeout_s: float,
        resend_every_s: float = 10.0,
        on_event: EventCallback | None = None,
    ) -> TaskAnswer | ErrorReply:
        """Publish `request` (resending it until answered) and return the reply."""
        future: asyncio.Future[TaskAnswer | ErrorReply] = asyncio.get_running_loop().create_future()
        self._waiting[request.task_id] = future
        events = routes.TASK_EVENTS.on(self.topics, self.client_id, request.task_id)  # the router publishes there
        if on_event is not None:
            await self._mqtt.route(events, lambda _topic, event: on_event(event))
        try:
            return await self._send_until_answered(request, future, timeout_s, resend_every_s)
        finally:
            self._waiting.pop(request.task_id, None)
            if on_event is not None:
                await self._mqtt.unsubscribe(events.topic_filter)

    async def _send_until_answered(
        self, request: TaskRequest, future: asyncio.Future[Any], timeout_s: float, resend_every_s: float
    ) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            await self._mqtt.publish_confirmed(self.submit_topic, request, timeout=5.0)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TaskTimeout(f"no answer to task {request.task_id} within {timeout_s:g} s")
            try:
                return await asyncio.wait_for(asyncio.shield(future), min(resend_every_s, remaining))
            except asyncio.TimeoutError:
                if time.monotonic() >= deadline:
                    raise TaskTimeout(f"no answer to task {request.task_id} within {timeout_s:g} s") from None

    def _on_reply(self, topic: str, reply: TaskAnswer | TaskChunk | ErrorReply) -> None:
        if reply.task_id:
            queue = self._streams.get(reply.task_id)
            if queue is not None:
                queue.put_nowait(reply)
            if isinstance(reply, TaskChunk):
                return
            future = self._waiting.get(reply.task_id)
            if future is not None and not future.done():
                future.set_result(reply)


def ask(
    query: str, brokers: tuple[str, ...] = ("mqtt://127.0.0.1:1883",), fabric: str = "default", **options: Any
) -> str:
    """Blocking one-call API: the voted answer to `query` as text."""

    async def run() -> str:
        async with FabricTaskClient(ConnectionSettings(fabric=fabric, brokers=brokers)) as client:
            return (await client.submit(query, **options)).answer

    return asyncio.run(run())
