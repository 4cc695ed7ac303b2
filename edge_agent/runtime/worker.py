"""One agent's task loop: bounded concurrency, a bounded queue, a deadline per run.

Runs up to `max_in_flight` requests at once; further requests wait in a queue of `queue_size`; beyond that the
request is refused as `busy`. Model calls run in worker threads so the event loop (beacons, state, other
agents) keeps flowing during generation; a backend that says it does not block (the echo backend without a delay)
is called on the event loop itself, unless the run streams.

A streaming backend hands each token to the worker as it comes: the tokens go out as RunChunks when the request
asks for a stream, and a cancel (RunCancel, or the run's own deadline) stops the generation within a token and
frees the slot. Tokens are coalesced into one chunk when they arrive faster than the event loop sends them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.backends.base import (
    Backend,
    BackendError,
    ChatMessage,
    Generation,
    GenerationOptions,
    StreamingBackend,
    constraint_kinds,
    is_blocking,
)
from edge_agent.personas import build_messages
from edge_agent.runtime.answering import Answered, reason_then_answer, refuse_unsupported
from edge_agent.runtime.metrics import AgentMetrics
from shared.errors import SymphonyError
from shared.messages import AgentInfo, AgentState, ErrorKind, RunChunk, RunRequest, RunResult, is_error_kind

ChunkPublisher = Callable[[RunChunk], None]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentProfile:
    """What an agent is: identity, persona, capacity (the static half of its beacon entry)."""

    agent_id: str
    persona: str
    system_prompt: str
    capabilities: tuple[str, ...]
    max_in_flight: int
    queue_size: int
    max_tokens: int
    temperature: float
    top_p: float
    backend_reason: str = ""
    description: str = ""
    cost_per_1k_tokens: float | None = None


class QueueFull(SymphonyError):
    """The agent's queue is full: the request is refused as busy."""


class ChunkStreamer:
    """Carries tokens from the model thread to the event loop, as numbered RunChunks (bursts become one chunk)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request: RunRequest, publish: ChunkPublisher) -> None:
        self.loop, self.request, self.publish = loop, request, publish
        self.seq = 0
        self._pending: list[str] = []
        self._scheduled = False
        self._lock = threading.Lock()

    def push(self, piece: str) -> None:
        """Called from the model thread."""
        with self._lock:
            self._pending.append(piece)
            if self._scheduled:
                return
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            pieces, self._pending, self._scheduled = self._pending, [], False
        if not pieces:
            return
        request = self.request
        chunk = RunChunk(
            dispatch_id=request.dispatch_id,
            task_id=request.task_id,
            agent_id=request.agent_id,
            seq=self.seq,
            text="".join(pieces),
            tokens=len(pieces),
        )
        self.seq += 1
        self.publish(chunk)


class AgentWorker:
    """Serves RunRequests for one agent on one backend."""

    def __init__(self, profile: AgentProfile, backend: Backend, node_id: str) -> None:
        self.profile = profile
        self.backend = backend
        # Decided once: an isinstance check against a runtime Protocol walks its members (~10 us) on every call.
        self._streaming = backend if isinstance(backend, StreamingBackend) else None
        self.node_id = node_id
        self.metrics = AgentMetrics()
        self.tokens_per_second: float | None = None
        self.in_flight = 0
        self.waiting = 0
        self.tokens_generated = 0  # every token a streaming backend produced, cancelled runs included
        self._count_lock = threading.Lock()  # model threads of concurrent runs count into it
        self._slots = asyncio.Semaphore(profile.max_in_flight)
        self._cancels: dict[str, threading.Event] = {}

    def info(self) -> AgentInfo:
        return AgentInfo(
            agent_id=self.profile.agent_id,
            persona=self.profile.persona,
            capabilities=self.profile.capabilities,
            backend=self.backend.name,
            backend_reason=self.profile.backend_reason,
            model=str(self.backend.model),
            max_in_flight=self.profile.max_in_flight,
            tokens_per_second=self.tokens_per_second,
            description=self.profile.description,
            cost_per_1k_tokens=self.profile.cost_per_1k_tokens,
            constraints=constraint_kinds(self.backend),
        )

    def state(self) -> AgentState:
        return AgentState(
            agent_id=self.profile.agent_id,
            load=min(1.0, self.in_flight / self.profile.max_in_flight),
            in_flight=self.in_flight,
            queue_length=self.waiting,
            latency_ema_ms=self.metrics.latency_ema_ms,
            available=self.waiting < self.profile.queue_size,
            runs=self.metrics.runs,
            errors=self.metrics.errors,
            tokens_per_second=self.metrics.tokens_per_second or self.tokens_per_second,
            latency_p50_ms=self.metrics.percentile(0.5),
            latency_p95_ms=self.metrics.percentile(0.95),
        )

    def admit(self) -> None:
        """Reserve a place for one request, or raise QueueFull."""
        if self.in_flight + self.waiting >= self.profile.max_in_flight + self.profile.queue_size:
            raise QueueFull(f"agent {self.profile.agent_id} is busy ({self.in_flight} running, {self.waiting} queued)")
        self.waiting += 1

    def cancel(self, dispatch_id: str) -> bool:
        """Stop a queued or running request (True when it was here); a streaming model stops within a token."""
        event = self._cancels.get(dispatch_id)
        if event is None:
            return False
        event.set()
        return True

    def cancel_all(self) -> int:
        """Stop every queued or running request (a swap that could not wait longer); returns how many."""
        events = list(self._cancels.values())
        for event in events:
            event.set()
        return len(events)

    async def run(self, request: RunRequest, publish_chunk: ChunkPublisher | None = None) -> RunResult:
        """Run an admitted request within its deadline and return the result (never raises).

        The deadline covers the wait for a slot and the model call. A streaming backend is stopped at the
        deadline or on `cancel`; a non-streaming model call cannot be interrupted in its thread: after a timeout
        it keeps its slot until it really ends, so max_in_flight bounds the calls actually running.
        """
        cancelled = threading.Event()
        self._cancels[request.dispatch_id] = cancelled
        try:
            return await self._run(request, cancelled, publish_chunk)
        finally:
            self._cancels.pop(request.dispatch_id, None)

    async def _run(
        self, request: RunRequest, cancelled: threading.Event, publish_chunk: ChunkPublisher | None
    ) -> RunResult:
        received = time.monotonic()
        try:
            got_slot = await self._take_slot(request.deadline_s)
        finally:
            self.waiting -= 1  # admitted requests leave the queue whether they got a slot or were cancelled
        if not got_slot:
            return self._timed_out(request, received)
        if cancelled.is_set():  # cancelled while queued: never starts
            self._slots.release()
            return self._failure(request, received, "cancelled", "cancelled before it started")
        self.in_flight += 1
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        streamer = ChunkStreamer(loop, request, publish_chunk) if request.stream and publish_chunk else None
        if streamer is None and not is_blocking(self.backend):
            call = self._generate_here(request, cancelled, started - received)
        else:
            call = loop.run_in_executor(None, self._generate, request, cancelled, streamer)
            call.add_done_callback(self._release_slot)
            await asyncio.wait({call}, timeout=max(0.0, request.deadline_s - (started - received)))
        if not call.done():
            cancelled.set()  # a streaming model stops at its next token and frees the slot
            return self._timed_out(request, received)
        if cancelled.is_set():
            return self._failure(request, received, "cancelled", "cancelled while running")
        try:
            generation, answer = self._answered(call.result())
        except BackendError as error:
            log.warning("agent %s: backend error on %s: %s", self.profile.agent_id, request.dispatch_id, error)
            kind = error.kind if is_error_kind(error.kind) else "backend_error"  # a plugin's own kind: not on the wire
            return self._failure(request, received, kind, str(error))
        except Exception as error:  # a backend that does not translate its errors must not leave the router waiting
            log.exception("agent %s: unexpected backend failure on %s", self.profile.agent_id, request.dispatch_id)
            return self._failure(request, received, "server_error", f"{type(error).__name__}: {error}")
        latency_ms = (time.monotonic() - started) * 1000
        self.metrics.record(latency_ms, generation.completion_tokens, ok=True)
        return RunResult(
            dispatch_id=request.dispatch_id,
            task_id=request.task_id,
            agent_id=self.profile.agent_id,
            node_id=self.node_id,
            text=generation.text,
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            latency_ms=latency_ms,
            queued_ms=(started - received) * 1000,
            answer=answer,
        )

    @staticmethod
    def _answered(outcome: Answered) -> tuple[Generation, str | None]:
        return outcome.generation, outcome.answer

    async def _take_slot(self, timeout_s: float) -> bool:
        """Take a running slot, waiting at most `timeout_s`; False on timeout."""
        if not self._slots.locked():
            return await self._slots.acquire()  # free: returns at once, without a trip through the event loop
        try:
            return await asyncio.wait_for(self._slots.acquire(), timeout_s)
        except asyncio.TimeoutError:
            return False

    def _generate_here(
        self, request: RunRequest, cancelled: threading.Event, waited_s: float
    ) -> asyncio.Future[Answered]:
        """The call of a backend that does not block (`is_blocking`), made on the event loop: no thread hop, no
        wake-up of the loop for its result. Its outcome is a finished future, as the threaded call's would be, or
        an unfinished one when the deadline passed while the run waited for its slot (the threaded call would
        have timed out at once)."""
        call: asyncio.Future[Answered] = asyncio.get_running_loop().create_future()
        if waited_s < request.deadline_s:
            try:
                call.set_result(self._generate(request, cancelled, None))
            except Exception as error:  # handed to the caller as the threaded call's `result()` would raise it
                call.set_exception(error)
        self._release_slot(call)
        return call

    def _release_slot(self, _: asyncio.Future[Answered]) -> None:
        self.in_flight -= 1
        self._slots.release()

    def _generate(self, request: RunRequest, cancelled: threading.Event, streamer: ChunkStreamer | None) -> Answered:
        """The model call (in a worker thread): one free or constrained generation, or reasoning then an answer."""
        refuse_unsupported(request, self.backend, self.profile.agent_id)
        system_prompt = request.instructions or self.profile.system_prompt
        messages = build_messages(system_prompt, request.subtask, list(request.context))
        options = GenerationOptions(
            max_tokens=min(request.sampling.max_tokens, self.profile.max_tokens * 4),
            temperature=request.sampling.temperature,
            top_p=request.sampling.top_p,
            seed=request.sampling.seed,
            constraint=request.constraint,
        )

        def generate(conversation: list[ChatMessage], settings: GenerationOptions) -> Generation:
            return self._call(conversation, settings, cancelled, streamer)

        if request.answer_constraint is None:
            return Answered(generate(messages, options))
        return reason_then_answer(
            generate, messages, options, request, between=streamer.push if streamer is not None else lambda _: None
        )

    def _call(
        self,
        messages: list[ChatMessage],
        options: GenerationOptions,
        cancelled: threading.Event,
        streamer: ChunkStreamer | None,
    ) -> Generation:
        """One generation, streamed token by token when the backend can (a cancel stops it within a token)."""
        if self._streaming is None:
            return self.backend.generate(messages, options)

        def sink(piece: str) -> bool:
            with self._count_lock:
                self.tokens_generated += 1
            if streamer is not None:
                streamer.push(piece)
            return not cancelled.is_set()

        return self._streaming.stream(messages, options, sink)

    def _timed_out(self, request: RunRequest, received: float) -> RunResult:
        return self._failure(request, received, "timeout", f"no answer within {request.deadline_s:g} s")

    def _failure(self, request: RunRequest, received: float, kind: ErrorKind, message: str) -> RunResult:
        latency_ms = (time.monotonic() - received) * 1000
        self.metrics.record(latency_ms, 0, ok=False)
        return RunResult(
            dispatch_id=request.dispatch_id,
            task_id=request.task_id,
            agent_id=self.profile.agent_id,
            node_id=self.node_id,
            latency_ms=latency_ms,
            error=kind,
            error_message=message[:4000],
        )
