"""`FabricClient` writes what a burst of work queued once that work has run: a routed task's claim, its run and
the acknowledgement that came before them leave in one send, not one send per loop pass.

The client's paho is replaced by a stub that records when it is asked to write; the event loop is asyncio's own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from shared.config import ConnectionSettings
from shared.mqtt import MAX_FLUSH_DEFERRALS, MAX_FLUSH_DELAY_S, FabricClient


class StubPaho:
    """Records each write request in `log` (and sets `written`); nothing is ever left queued."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name
        self.sock = object()
        self.written = asyncio.Event()

    def socket(self) -> Any:
        return self.sock

    def loop_write(self) -> None:
        self.log.append(f"write {self.name}")
        self.written.set()

    def want_write(self) -> bool:
        return False


def client_writing_to(log: list[str], name: str = "a") -> tuple[FabricClient, StubPaho]:
    client = FabricClient(ConnectionSettings(fabric="unit"), f"unit-{name}")
    stub = StubPaho(log, name)
    client._paho = stub  # type: ignore[assignment]
    client._loop = asyncio.get_running_loop()
    client._watched_fd = -1  # as if the socket were watched
    return client, stub


async def waiting_for(*stubs: StubPaho) -> asyncio.Future[Any]:
    """A future of the stubs' writes, already waiting: nothing of it is left in the ready queue (a coroutine that
    sleeps, or a task not started yet, would be work ready for the loop)."""
    waiter = asyncio.ensure_future(asyncio.wait_for(asyncio.gather(*(stub.written.wait() for stub in stubs)), 1.0))
    for _ in range(3):
        await asyncio.sleep(0)
    return waiter


def test_a_write_waits_for_the_steps_ready_before_it() -> None:
    asyncio.run(_a_write_waits_for_the_steps_ready_before_it())


async def _a_write_waits_for_the_steps_ready_before_it() -> None:
    log: list[str] = []
    client, stub = client_writing_to(log)

    async def task_steps() -> None:  # a handler's task: three steps, each one loop pass apart
        for step in range(3):
            log.append(f"step {step}")
            client._want_write(stub.sock)  # a publish in each step
            await asyncio.sleep(0)

    written = await waiting_for(stub)
    await task_steps()  # (the test's own coroutine: its steps are ready work like any task's)
    await written
    assert log == ["step 0", "step 1", "step 2", "write a"]


def test_a_write_with_nothing_else_ready_goes_at_once() -> None:
    asyncio.run(_a_write_with_nothing_else_ready_goes_at_once())


async def _a_write_with_nothing_else_ready_goes_at_once() -> None:
    log: list[str] = []
    client, stub = client_writing_to(log)
    written = await waiting_for(stub)
    client._want_write(stub.sock)
    await written
    assert log == ["write a"]
    assert client._flush_deferrals == 0


def test_a_busy_loop_delays_a_write_a_bounded_number_of_passes() -> None:
    asyncio.run(_a_busy_loop_delays_a_write_a_bounded_number_of_passes())


async def _a_busy_loop_delays_a_write_a_bounded_number_of_passes() -> None:
    log: list[str] = []
    client, stub = client_writing_to(log)
    loop = asyncio.get_running_loop()
    remaining = [MAX_FLUSH_DEFERRALS * 3]

    def busy() -> None:  # always more work ready
        log.append("busy")
        remaining[0] -= 1
        if remaining[0]:
            loop.call_soon(busy)

    written = await waiting_for(stub)
    client._want_write(stub.sock)
    loop.call_soon(busy)
    await written
    assert client._flush_deferrals == MAX_FLUSH_DEFERRALS
    assert log.index("write a") == MAX_FLUSH_DEFERRALS  # after the busy callbacks of as many passes


def test_two_clients_in_one_loop_do_not_wait_for_each_other() -> None:
    asyncio.run(_two_clients_in_one_loop_do_not_wait_for_each_other())


async def _two_clients_in_one_loop_do_not_wait_for_each_other() -> None:
    log: list[str] = []
    first, first_stub = client_writing_to(log, "a")
    second, second_stub = client_writing_to(log, "b")
    written = await waiting_for(second_stub)  # (waiting for both: the first write would wake the waiter)
    first._want_write(first_stub.sock)
    second._want_write(second_stub.sock)
    await written
    assert log == ["write a", "write b"]
    assert first._flush_deferrals == second._flush_deferrals == 0


def test_a_long_burst_delays_a_write_a_bounded_time() -> None:
    asyncio.run(_a_long_burst_delays_a_write_a_bounded_time())


async def _a_long_burst_delays_a_write_a_bounded_time() -> None:
    log: list[str] = []
    client, stub = client_writing_to(log)
    loop = asyncio.get_running_loop()
    remaining = [MAX_FLUSH_DEFERRALS]

    def slow() -> None:  # each pass takes longer than the delay a write may wait
        time.sleep(MAX_FLUSH_DELAY_S * 1.5)
        log.append("slow")
        remaining[0] -= 1
        if remaining[0]:
            loop.call_soon(slow)

    written = await waiting_for(stub)
    client._want_write(stub.sock)
    loop.call_soon(slow)
    await written
    assert log.index("write a") == 1  # deferred once: after the first slow pass, the delay was spent
