"""Issue 19, item 4 (router side): one account cannot take the fleet. Its tasks in flight, cot_count and plan_k
are capped per account (answered `rate_limited` / `too_large`), and its deadline_s is capped by the router's
`max_deadline_s`, never the other way round. Alice floods; bob, another account, still gets his task in."""

from __future__ import annotations

import asyncio

from integration.security.tenancy_scene import (
    attempt,
    eventually,
    inbox,
    run,
    scene,
    submit_topics,
    task_payload,
)
from secured import Fleet

from shared.config import AccountLimits
from shared.messages import ErrorReply
from shared.topics import Topics

MAX_DEADLINE_S = 30.0
SETTLE_S = 0.5


def test_one_account_is_capped_and_another_still_gets_in(secured: Fleet) -> None:
    run(_flood(secured))


async def _flood(fleet: Fleet) -> None:
    topics = Topics(fleet.connection("alice").fabric)
    caps = {"max_deadline_s": MAX_DEADLINE_S, "limits": AccountLimits(tasks=2, cot_count=3, plan_k=2)}
    async with scene(fleet, answer=None, **caps) as (_router, agent):  # runs held: tasks stay in flight
        alice, bob = await inbox(fleet, "alice"), await inbox(fleet, "bob")
        flood = [f"flood-{number}" for number in range(5)]
        for task_id in flood:
            for topic in submit_topics(topics, "alice"):
                await attempt(fleet.connection("alice"), topic, task_payload(task_id, "alice", topics, deadline_s=3600))
        for topic in submit_topics(topics, "alice"):
            await attempt(fleet.connection("alice"), topic, task_payload("huge", "alice", topics, cot_count=9))
        for topic in submit_topics(topics, "bob"):
            await attempt(fleet.connection("bob"), topic, task_payload("bob-0", "bob", topics, deadline_s=3600))

        def refusals() -> dict[str, str]:
            return {m.task_id: m.code for _, m in alice.messages if isinstance(m, ErrorReply) and m.task_id}

        await eventually(lambda: len(refusals()) >= 4, "alice's refusals")
        await eventually(lambda: {"flood-0", "flood-1", "bob-0"} <= {r.task_id for r in agent.runs}, "the runs")
        await asyncio.sleep(SETTLE_S)
        admitted = sorted({run.task_id for run in agent.runs})
        assert admitted == ["bob-0", "flood-0", "flood-1"], f"admitted past the caps: {admitted}"
        assert refusals() == {"flood-2": "rate_limited", "flood-3": "rate_limited", "flood-4": "rate_limited"} | {
            "huge": "too_large"
        }
        longest = max(run.deadline_s for run in agent.runs)
        assert longest <= MAX_DEADLINE_S, f"a run was given {longest:g} s past the router's {MAX_DEADLINE_S:g} s"
        assert not [m for _, m in bob.messages if isinstance(m, ErrorReply)]
        for client in (alice.client, bob.client):
            await client.close()
