"""The fleet's phases over MQTT: each agent alone (direct RunRequests), and tasks through the router.

Every record is a plain dict (JSON-ready) so the metrics and the report are pure functions of the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from bench.data.items import BenchItem
from bench.runner.fabric import TEACHER
from bench.runner.prompts import REQUIREMENTS, gold_for_router, prompt_for
from bench.runner.scoring import score
from router.answers import extract_answer
from shared import topics as routes
from shared.client import FabricTaskClient, TaskFailed, TaskTimeout
from shared.config import ConnectionSettings
from shared.messages import (
    ErrorReply,
    NodeBeacon,
    RouterPresence,
    RunChunk,
    RunRequest,
    RunResult,
    SamplingOptions,
    TaskEvent,
)
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

DIFFICULTY_OPTION = {"easy": "simple", "hard": "hard"}
Record = dict[str, Any]


async def wait_for_fabric(
    connection: ConnectionSettings, agent_ids: Sequence[str], router_id: str, timeout_s: float = 60.0
) -> None:
    """Wait until every agent's beacon says online and the router announced itself (bounded)."""
    topics = Topics(connection.fabric)
    online: set[str] = set()
    routers: set[str] = set()
    changed = asyncio.Event()

    def on_beacon(topic: str, beacon: NodeBeacon) -> None:
        for agent in beacon.agents:
            (online.add if beacon.status == "online" else online.discard)(agent.agent_id)
        changed.set()

    def on_presence(topic: str, presence: RouterPresence) -> None:
        if presence.status == "online":
            routers.add(presence.router_id)
        changed.set()

    client = FabricClient(connection, unique_client_id("fleet-watch"))
    await client.route(routes.BEACONS.on(topics), on_beacon)
    await client.route(routes.ROUTER_PRESENCES.on(topics), on_presence)
    await client.connect()
    deadline = time.monotonic() + timeout_s
    try:
        while not (set(agent_ids) <= online and router_id in routers):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = sorted(set(agent_ids) - online) + ([router_id] if router_id not in routers else [])
                raise TimeoutError(f"not online after {timeout_s:g} s: {', '.join(missing)}")
            changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, 0.5))
    finally:
        await client.close()


def item_fields(item: BenchItem, index: int) -> Record:
    return {"index": index, "item_id": item.item_id, "benchmark": item.benchmark, "difficulty": item.difficulty}


async def run_alone(
    connection: ConnectionSettings, stream: Sequence[BenchItem], agent_ids: Sequence[str], timeout_s: float = 30.0
) -> list[Record]:
    """Every item to every agent directly (RunRequest on its run topic), all agents of an item at once."""
    topics = Topics(connection.fabric)
    client_id = unique_client_id("fleet-alone")
    waiting: dict[str, asyncio.Future[RunResult]] = {}

    def on_result(topic: str, result: RunResult | RunChunk | ErrorReply) -> None:
        if not isinstance(result, RunResult):
            return
        future = waiting.get(result.dispatch_id)
        if future is not None and not future.done():
            future.set_result(result)

    client = FabricClient(connection, client_id)
    inbox = routes.ROUTER_INBOX.on(topics, client_id)  # agents answer only inside a router's inbox namespace
    await client.route(inbox, on_result)
    await client.connect()
    records: list[Record] = []
    loop = asyncio.get_running_loop()
    try:
        for index, item in enumerate(stream):
            prompt = prompt_for(item)
            futures = {}
            for agent_id in agent_ids:
                dispatch_id = uuid.uuid4().hex
                futures[agent_id] = waiting[dispatch_id] = loop.create_future()
                request = RunRequest(
                    dispatch_id=dispatch_id,
                    task_id=f"alone-{index}",
                    agent_id=agent_id,
                    subtask=prompt,
                    sampling=SamplingOptions(max_tokens=256, temperature=0.0),
                    deadline_s=timeout_s,
                    reply_topic=inbox.topic_filter,
                )
                client.publish(topics.agent_run(agent_id), request)
            for agent_id, future in futures.items():
                result = await asyncio.wait_for(future, timeout_s)
                answer = extract_answer(result.text).raw
                records.append(
                    {
                        **item_fields(item, index),
                        "agent": agent_id,
                        "answer": answer,
                        "correct": score(item, answer, result.text).correct,
                        "tokens": result.prompt_tokens + result.completion_tokens,
                        "error": result.error,
                    }
                )
            waiting.clear()
    finally:
        await client.close()
    return records


async def run_routed(
    connection: ConnectionSettings,
    stream: Sequence[BenchItem],
    phase: str,
    cot_count: int,
    *,
    top_l: int = 3,
    run_timeout_s: float = 3.0,
    before_task: Callable[[int], None] | None = None,
    agent_id: str | None = None,
) -> list[Record]:
    """Each item as a task through the router, one at a time; the ballots tell which agents answered.

    With `agent_id` every run of a task goes to that agent (a direct run): `cot_count` samples of one agent,
    voted by the router as any vote, which is the self-consistency baseline.
    """
    records: list[Record] = []
    async with FabricTaskClient(connection, client_id=TEACHER) as client:
        for index, item in enumerate(stream):
            if before_task is not None:
                before_task(index)
            dispatched: list[str] = []

            def on_event(event: TaskEvent, sink: list[str] = dispatched) -> None:
                if event.event in ("dispatched", "redispatched") and event.data.get("agent"):
                    sink.append(str(event.data["agent"]))

            started = time.monotonic()
            record: Record = {**item_fields(item, index), "phase": phase, "cot_count": cot_count}
            try:
                answer = await client.submit(
                    prompt_for(item),
                    task_id=f"{phase}-{index}-{uuid.uuid4().hex[:8]}",
                    requirements=REQUIREMENTS.get(item.benchmark, ()),
                    timeout_s=60.0,
                    resend_every_s=5.0,
                    on_event=on_event,
                    plan_k=1,
                    cot_count=cot_count,
                    top_l=top_l,
                    deadline_s=30.0,
                    run_timeout_s=run_timeout_s,
                    temperature=0.0,
                    benchmark=item.benchmark,
                    difficulty=DIFFICULTY_OPTION.get(item.difficulty or ""),
                    gold_answer=gold_for_router(item),
                    agent_id=agent_id,
                )
            except (TaskFailed, TaskTimeout) as error:
                record.update(correct=False, answer="", agents=[], dispatched=dispatched, error=str(error)[:200])
            else:
                ballots = [ballot.agent_id for subtask in answer.subtasks for ballot in subtask.ballots]
                outcome = score(item, answer.answer, answer.final_text)
                record.update(correct=outcome.correct, answer=answer.answer, agents=ballots, dispatched=dispatched)
                record["error"] = None
            record["elapsed_ms"] = round((time.monotonic() - started) * 1000.0, 1)
            records.append(record)
    return records
