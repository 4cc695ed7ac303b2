"""Nothing lost, nothing run twice (issue 16), tried as a user runs the system: processes, real brokers, clients
that keep submitting and resend every 2 s as the Python client does, and a count per task id.

- the broker is restarted twice under continuous load (SIGTERM, then SIGKILL; about 1.5 s down each time), on
  mosquitto with persistence and on the embedded amqtt broker;
- one of two routers is SIGKILLed and restarted under continuous load; while it is dead, tasks it answered are
  resubmitted and replayed by the survivor from the shared ledger, and again after it is back.

Counted per task id: answered or lost; the distinct answers seen (replies and the routers' ledger); the dispatch
ids the agents really ran (their `-v` logs) and the routers they ran them for. A task that a killed router was
running when it died is run again by its new owner (that router's runs died with it): those are reported as
taken over, and are the only tasks allowed runs for two routers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.reliability.counting import (
    LedgerLog,
    LoadLog,
    agent_logs,
    agent_runs,
    continuous_load,
    replay_answered,
    scenario_report,
)
from integration.reliability.fleet import Watcher, bounded, connection, slow_agents, start_fleet
from support import RunningBroker, amqtt_command, mosquitto_command

from broker.mosquitto import MosquittoConfig
from broker.policy import free_port
from shared.messages import TaskAnswer

AGENTS = ("edge-a", "edge-b", "edge-c")
CLIENTS = 3
DOWN_S = 1.5


@pytest.fixture(params=["amqtt", "mosquitto"])
def persistent_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningBroker]:
    """The embedded broker, or mosquitto with persistence on (as deployed)."""
    port = free_port()
    if request.param == "amqtt":
        command = amqtt_command(port)
    else:
        store = tmp_path / "mosquitto-store"
        store.mkdir()
        config = MosquittoConfig(host="127.0.0.1", port=port, persistence_dir=store)
        command = mosquitto_command(tmp_path, port, config)
    broker = RunningBroker(request.param, port, command)
    broker.start()
    yield broker
    broker.stop()


@pytest.mark.slow
def test_broker_restarted_twice_under_load_loses_nothing_and_runs_nothing_twice(
    persistent_broker: RunningBroker, fabric: str, fleet_factory
):
    fleet = fleet_factory(fabric, [persistent_broker.url])
    slow_agents(fleet, 1.0)  # results are still coming when the broker goes
    settings = connection([persistent_broker.url], fabric)
    watcher, ledger = Watcher(settings), LedgerLog(settings)
    load, faults = LoadLog(), []

    async def restart(kill: bool) -> None:
        stop = persistent_broker.kill if kill else persistent_broker.stop
        await asyncio.to_thread(stop)
        faults.append(time.monotonic())
        await asyncio.sleep(DOWN_S)
        await asyncio.to_thread(persistent_broker.start)
        back = time.monotonic()
        everyone = {*AGENTS, "router-1"}
        assert await watcher.wait_until(lambda: watcher.announced_since(back) >= everyone, 20)

    async def scenario() -> None:
        await watcher.start()
        await ledger.start()
        try:
            await start_fleet(fleet, watcher, ("router-1",), AGENTS)
            stop = asyncio.Event()
            running = asyncio.ensure_future(continuous_load(settings, CLIENTS, stop, load))
            await asyncio.sleep(3.0)
            await restart(kill=False)  # SIGTERM
            await asyncio.sleep(3.0)
            await restart(kill=True)  # SIGKILL
            await asyncio.sleep(3.0)
            stop.set()
            await running
            await asyncio.sleep(0.5)
        finally:
            await ledger.close()
            await watcher.close()

    bounded(scenario(), 150)
    runs = agent_runs(agent_logs([fleet], AGENTS))
    twice = set(runs.dispatch_run_twice()) | set(watcher.duplicate_answers())
    two_answers = {task_id: answers for task_id, answers in ledger.answers.items() if len(answers) > 1}
    scenario_report(f"broker restarted twice ({persistent_broker.kind})", load, faults, len(twice))
    assert len(faults) == 2 and len(load.tasks) > 20
    assert not load.lost(), ([load.tasks[t].reply for t in load.lost()], watcher.explain(load.lost()))
    assert not twice, twice
    assert not two_answers, two_answers
    assert all(fleet.alive(name) for name in (*AGENTS, "router-1"))


@pytest.mark.slow
def test_a_router_killed_and_restarted_under_load_hands_over_without_running_a_task_twice(
    persistent_broker: RunningBroker, fabric: str, fleet_factory
):
    fleet = fleet_factory(fabric, [persistent_broker.url])
    slow_agents(fleet, 2.5)  # longer than the clients' 2 s resend: tasks are resent while a router runs them
    settings = connection([persistent_broker.url], fabric)
    watcher, ledger = Watcher(settings), LedgerLog(settings)
    load, faults = LoadLog(), []
    replays: dict[str, list[TaskAnswer | object]] = {"while dead": [], "after return": []}

    async def replay(label: str, count: int) -> int:
        """Resubmit `count` tasks answered by router-1 (as their clients); returns the new agent runs of those."""
        replies, new_runs = await replay_answered(
            settings, load, "router-1", count, lambda: agent_logs([fleet], AGENTS)
        )
        replays[label].extend(replies)
        return new_runs

    async def scenario() -> tuple[int, int]:
        await watcher.start()
        await ledger.start()
        try:
            await start_fleet(fleet, watcher, ("router-1", "router-2"), AGENTS)
            await asyncio.sleep(0.5)  # each router hears the other's presence
            stop = asyncio.Event()
            running = asyncio.ensure_future(continuous_load(settings, CLIENTS, stop, load))
            await asyncio.sleep(6.0)
            # The tasks split between the routers by id: wait (bounded) until router-1 has answered a few, so that
            # there is something to replay while it is dead.
            for _ in range(300):
                if len(load.answered_by("router-1")) >= 3:
                    break
                await asyncio.sleep(0.1)
            fleet.kill("router-1")
            faults.append(time.monotonic())
            new_runs_dead = await replay("while dead", 5)
            fleet.start_router("router-1")
            back = time.monotonic()
            assert await watcher.wait_until(lambda: "router-1" in watcher.announced_since(back), 20)
            faults.append(time.monotonic())
            await asyncio.sleep(6.0)
            stop.set()
            await running
            new_runs_back = await replay("after return", 5)
            return new_runs_dead, new_runs_back
        finally:
            await ledger.close()
            await watcher.close()

    new_runs_dead, new_runs_back = bounded(scenario(), 150)
    runs = agent_runs(agent_logs([fleet], AGENTS))
    instances = ledger.instances("router-1")
    taken_over = ledger.unfinished_claims("router-1", instances[0]) if instances else set()
    back_answers = [e for e in ledger.entries if e.status == "answered" and e.instance_id in instances[1:]]
    by_two = set(runs.by_two_routers())
    twice = set(runs.dispatch_run_twice()) | set(watcher.duplicate_answers()) | (by_two - taken_over)
    two_answers = {task_id: answers for task_id, answers in ledger.answers.items() if len(answers) > 1}
    replayed = {label: sum(isinstance(r, TaskAnswer) for r in replies) for label, replies in replays.items()}
    scenario_report(
        f"router killed and restarted ({persistent_broker.kind})",
        load,
        faults,
        len(twice),
        f"taken over from the killed router={len(by_two & taken_over)}; answered by it once back="
        f"{len(back_answers)}; resends acknowledged="
        f"{watcher.event_names()['resent']}; replayed while it was dead "
        f"{replayed['while dead']}/{len(replays['while dead'])}, after it came back "
        f"{replayed['after return']}/{len(replays['after return'])} (new runs: {new_runs_dead + new_runs_back})",
    )
    assert not load.lost(), ([load.tasks[t].reply for t in load.lost()], watcher.explain(load.lost()))
    assert not twice, twice
    assert not two_answers, two_answers
    assert replays["while dead"] and all(isinstance(r, TaskAnswer) for r in replays["while dead"]), replays
    assert replays["after return"] and all(isinstance(r, TaskAnswer) for r in replays["after return"]), replays
    assert new_runs_dead == 0 and new_runs_back == 0
    assert back_answers, "the restarted router took no work back"
