"""AgentWorker on the echo backend: bounded concurrency, bounded queue, deadlines, backend errors as kinds."""

from __future__ import annotations

import asyncio
import threading

import pytest

from edge_agent.backends.base import (
    ChatMessage,
    Generation,
    GenerationOptions,
    PaymentRequired,
    ServerError,
    TokenSink,
)
from edge_agent.backends.echo import EchoBackend
from edge_agent.runtime.worker import AgentProfile, AgentWorker, QueueFull
from shared.messages import RunChunk, RunRequest, RunResult


class CountingEcho(EchoBackend):
    """The echo backend, recording how many generations run at the same moment."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s=delay_s)
        self._lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.calls = 0

    def generate(self, messages: list[ChatMessage], options: GenerationOptions) -> Generation:
        with self._lock:
            self.active += 1
            self.calls += 1
            self.peak = max(self.peak, self.active)
        try:
            return super().generate(messages, options)
        finally:
            with self._lock:
                self.active -= 1

    def stream(self, messages: list[ChatMessage], options: GenerationOptions, sink: TokenSink) -> Generation:
        return self.generate(messages, options)


class GenerateOnlyEcho:
    """An echo model that cannot stream (so it cannot be stopped mid-generation either)."""

    def __init__(self, delay_s: float) -> None:
        self._echo = EchoBackend(delay_s=delay_s)
        self.name, self.model, self.device, self.supports_chat_template = "echo", "echo", "cpu", True

    def generate(self, messages: list[ChatMessage], options: GenerationOptions) -> Generation:
        return self._echo.generate(messages, options)

    def close(self) -> None:
        self._echo.close()


class FailingBackend(EchoBackend):
    """A backend whose every call raises the given error."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def generate(self, messages: list[ChatMessage], options: GenerationOptions) -> Generation:
        raise self.error

    def stream(self, messages: list[ChatMessage], options: GenerationOptions, sink: TokenSink) -> Generation:
        raise self.error


def profile(max_in_flight: int = 1, queue_size: int = 16) -> AgentProfile:
    return AgentProfile(
        agent_id="n-echo",
        persona="generalist",
        system_prompt="You echo.",
        capabilities=("echo",),
        max_in_flight=max_in_flight,
        queue_size=queue_size,
        max_tokens=64,
        temperature=0.0,
        top_p=1.0,
    )


def request(
    number: int = 0, deadline_s: float = 30.0, subtask: str = "hello there", stream: bool = False
) -> RunRequest:
    return RunRequest(
        dispatch_id=f"d-{number}",
        task_id="t-1",
        agent_id="n-echo",
        subtask=subtask,
        deadline_s=deadline_s,
        reply_topic="symphony/t/reply/c",
        stream=stream,
    )


async def admit_and_run(worker: AgentWorker, requests: list[RunRequest]) -> list[RunResult]:
    for _ in requests:
        worker.admit()
    return list(await asyncio.gather(*(worker.run(item) for item in requests)))


def test_a_run_returns_the_echo_with_usage_and_identity() -> None:
    worker = AgentWorker(profile(), EchoBackend(), "node-1")
    (result,) = asyncio.run(admit_and_run(worker, [request(subtask="two plus two")]))
    assert result.ok
    assert (result.dispatch_id, result.task_id, result.agent_id, result.node_id) == ("d-0", "t-1", "n-echo", "node-1")
    assert result.text.startswith("echo: ") and "two plus two" in result.text
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    assert result.latency_ms >= 0 and result.queued_ms >= 0
    assert worker.metrics.runs == 1
    assert (worker.in_flight, worker.waiting) == (0, 0)


@pytest.mark.parametrize("max_in_flight", [1, 2, 3])
def test_concurrency_never_exceeds_max_in_flight(max_in_flight: int) -> None:
    backend = CountingEcho(delay_s=0.05)
    worker = AgentWorker(profile(max_in_flight=max_in_flight, queue_size=16), backend, "node-1")
    peaks: list[int] = []

    async def scenario() -> list[RunResult]:
        async def watch() -> None:
            while True:
                peaks.append(worker.state().in_flight)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        try:
            return await admit_and_run(worker, [request(number) for number in range(8)])
        finally:
            watcher.cancel()

    results = asyncio.run(scenario())
    assert all(result.ok for result in results)
    assert sorted(result.dispatch_id for result in results) == sorted(f"d-{number}" for number in range(8))
    assert backend.calls == 8
    assert backend.peak <= max_in_flight
    assert max(peaks) <= max_in_flight
    if max_in_flight > 1:
        assert backend.peak > 1  # the slots are really used in parallel, not serialised


def test_the_queue_is_bounded_and_refuses_with_queue_full() -> None:
    worker = AgentWorker(profile(max_in_flight=2, queue_size=1), EchoBackend(), "node-1")
    for _ in range(3):
        worker.admit()
    assert not worker.state().available
    with pytest.raises(QueueFull, match="busy"):
        worker.admit()
    assert worker.state().queue_length == 3  # the refused request left no trace


def test_queue_size_zero_admits_only_max_in_flight() -> None:
    worker = AgentWorker(profile(max_in_flight=1, queue_size=0), EchoBackend(), "node-1")
    worker.admit()
    with pytest.raises(QueueFull):
        worker.admit()


def test_places_free_up_after_runs_finish() -> None:
    worker = AgentWorker(profile(max_in_flight=1, queue_size=0), EchoBackend(), "node-1")

    async def scenario() -> None:
        for number in range(3):
            worker.admit()
            assert (await worker.run(request(number))).ok

    asyncio.run(scenario())
    assert worker.metrics.runs == 3


def test_a_missed_deadline_gives_a_timeout_result() -> None:
    worker = AgentWorker(profile(), EchoBackend(delay_s=1.0), "node-1")
    (result,) = asyncio.run(admit_and_run(worker, [request(deadline_s=0.05)]))
    assert result.error == "timeout"
    assert not result.ok
    assert result.text == ""
    assert "0.05" in result.error_message
    assert (worker.metrics.runs, worker.metrics.errors) == (1, 1)
    assert (worker.in_flight, worker.waiting) == (0, 0)


def test_a_timed_out_call_keeps_its_slot_until_the_model_call_really_ends() -> None:
    worker = AgentWorker(profile(max_in_flight=1), GenerateOnlyEcho(delay_s=0.4), "node-1")  # type: ignore[arg-type]

    async def scenario() -> tuple[int, RunResult]:
        worker.admit()
        timed_out = await worker.run(request(1, deadline_s=0.05))
        assert timed_out.error == "timeout"
        still_running = worker.in_flight  # the echo call is still sleeping in its thread
        worker.admit()
        return still_running, await worker.run(request(2, deadline_s=30.0))

    still_running, second = asyncio.run(scenario())
    assert still_running == 1
    assert second.ok
    assert second.queued_ms > 200  # it waited for the first call's slot


def test_a_deadline_also_covers_time_in_the_queue() -> None:
    worker = AgentWorker(profile(max_in_flight=1), EchoBackend(delay_s=0.5), "node-1")
    slow, queued = request(1, deadline_s=30.0), request(2, deadline_s=0.1)
    first, second = asyncio.run(admit_and_run(worker, [slow, queued]))
    assert first.ok
    assert second.error == "timeout"
    assert worker.waiting == 0


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ServerError("engine crashed"), "server_error"),
        (PaymentRequired("no credit"), "payment_required"),
    ],
)
def test_a_backend_error_becomes_its_error_kind(error: Exception, kind: str) -> None:
    worker = AgentWorker(profile(), FailingBackend(error), "node-1")
    (result,) = asyncio.run(admit_and_run(worker, [request()]))
    assert result.error == kind
    assert str(error) in result.error_message
    assert worker.metrics.errors == 1
    assert worker.in_flight == 0


def test_a_closed_echo_backend_gives_backend_error() -> None:
    backend = EchoBackend()
    backend.close()
    worker = AgentWorker(profile(), backend, "node-1")
    (result,) = asyncio.run(admit_and_run(worker, [request()]))
    assert result.error == "backend_error"


def test_an_unexpected_exception_in_a_backend_still_gives_a_result() -> None:
    worker = AgentWorker(profile(), FailingBackend(RuntimeError("segfault-ish")), "node-1")
    (result,) = asyncio.run(admit_and_run(worker, [request()]))
    assert result.error == "server_error"
    assert "segfault-ish" in result.error_message
    assert worker.in_flight == 0


class ThreadRecordingEcho(EchoBackend):
    """The echo backend, recording the thread of each call."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s=delay_s)
        self.threads: list[threading.Thread] = []

    def stream(self, messages: list[ChatMessage], options: GenerationOptions, sink: TokenSink) -> Generation:
        self.threads.append(threading.current_thread())
        return super().stream(messages, options, sink)


@pytest.mark.parametrize(("delay_s", "on_the_loop"), [(0.0, True), (0.001, False)])
def test_a_backend_that_does_not_block_is_called_on_the_event_loop(delay_s: float, on_the_loop: bool) -> None:
    backend = ThreadRecordingEcho(delay_s)
    worker = AgentWorker(profile(max_in_flight=2), backend, "node-1")
    results = asyncio.run(admit_and_run(worker, [request(0), request(1)]))
    assert all(result.ok for result in results)
    assert [thread is threading.main_thread() for thread in backend.threads] == [on_the_loop] * 2
    assert (worker.in_flight, worker.waiting) == (0, 0)


def test_state_and_info_describe_the_agent() -> None:
    worker = AgentWorker(profile(max_in_flight=2, queue_size=4), EchoBackend(), "node-1")
    worker.admit()
    state = worker.state()
    assert (state.agent_id, state.in_flight, state.queue_length, state.load, state.available) == (
        "n-echo",
        0,
        1,
        0.0,
        True,
    )
    info = worker.info()
    assert (info.agent_id, info.backend, info.model, info.max_in_flight, info.capabilities) == (
        "n-echo",
        "echo",
        "echo",
        2,
        ("echo",),
    )


LONG = " ".join(f"w{index}" for index in range(40))


def test_a_streamed_run_sends_numbered_chunks_that_add_up_to_the_result() -> None:
    worker = AgentWorker(profile(), EchoBackend(delay_s=0.2), "node-1")
    chunks: list[RunChunk] = []

    async def scenario() -> RunResult:
        worker.admit()
        return await worker.run(request(stream=True, subtask=LONG), chunks.append)

    result = asyncio.run(scenario())
    assert result.ok and len(chunks) > 1
    assert [chunk.seq for chunk in chunks] == list(range(len(chunks)))
    assert "".join(chunk.text for chunk in chunks) == result.text
    assert sum(chunk.tokens for chunk in chunks) == worker.tokens_generated


def test_a_run_without_stream_sends_no_chunks() -> None:
    worker = AgentWorker(profile(), EchoBackend(), "node-1")
    chunks: list[RunChunk] = []

    async def scenario() -> RunResult:
        worker.admit()
        return await worker.run(request(subtask=LONG), chunks.append)

    assert asyncio.run(scenario()).ok and chunks == []


def test_cancel_stops_the_generation_within_a_token_and_frees_the_slot() -> None:
    worker = AgentWorker(profile(max_in_flight=1), EchoBackend(delay_s=2.0), "node-1")
    chunks: list[RunChunk] = []

    async def scenario() -> tuple[RunResult, RunResult]:
        worker.admit()
        running = asyncio.create_task(worker.run(request(1, stream=True, subtask=LONG), chunks.append))
        while not chunks:
            await asyncio.sleep(0.01)
        assert worker.cancel("d-1") and not worker.cancel("d-unknown")
        cancelled = await running
        worker.admit()
        return cancelled, await worker.run(request(2, subtask="next one"))

    cancelled, following = asyncio.run(scenario())
    assert cancelled.error == "cancelled"
    assert worker.tokens_generated < 10 + len(following.text.split())  # far fewer than the 44 words of the reply
    assert following.ok and worker.in_flight == 0


def test_a_cancel_while_queued_means_the_run_never_starts() -> None:
    worker = AgentWorker(profile(max_in_flight=1), EchoBackend(delay_s=0.3), "node-1")

    async def scenario() -> list[RunResult]:
        worker.admit()
        worker.admit()
        first = asyncio.create_task(worker.run(request(1)))
        second = asyncio.create_task(worker.run(request(2)))
        await asyncio.sleep(0.05)
        worker.cancel("d-2")
        return [await first, await second]

    first, second = asyncio.run(scenario())
    assert first.ok and second.error == "cancelled"
    assert worker.in_flight == 0 and worker.waiting == 0


def test_a_passed_deadline_stops_a_streaming_model() -> None:
    worker = AgentWorker(profile(max_in_flight=1), EchoBackend(delay_s=4.0), "node-1")

    async def scenario() -> RunResult:
        worker.admit()
        result = await worker.run(request(1, deadline_s=0.2, subtask=LONG))
        while worker.in_flight:  # the model thread ends at its next token
            await asyncio.sleep(0.02)
        return result

    assert asyncio.run(scenario()).error == "timeout"
    assert worker.tokens_generated < 10
