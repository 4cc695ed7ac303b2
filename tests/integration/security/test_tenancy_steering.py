"""Issue 19, item 8: a second account can neither send answers and events to another client nor amplify a task
by resending its id. Bob attacks alice's replies on both brokers, with every submit topic he might try."""

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

from shared.messages import ErrorReply, TaskAnswer, TaskEvent
from shared.topics import Topics

SETTLE_S = 0.5  # after the last expected message, for one that must not come


def test_a_second_account_cannot_send_answers_or_events_to_another_client(secured: Fleet) -> None:
    run(_steering(secured))


async def _steering(fleet: Fleet) -> None:
    topics = Topics(fleet.connection("alice").fabric)
    async with scene(fleet, answer="42") as (router, _agent):
        alice, bob = await inbox(fleet, "alice"), await inbox(fleet, "bob")
        # Bob names alice's reply topic and client id, on every submit topic, alice's own included.
        steered = [*submit_topics(topics, "bob"), f"{topics.prefix}/task/submit/alice"]
        for index, topic in enumerate(steered):
            await attempt(fleet.connection("bob"), topic, task_payload(f"steer-{index}", "alice", topics))
        for topic in submit_topics(topics, "bob"):  # then his own task: answered after the attempts
            await attempt(fleet.connection("bob"), topic, task_payload("bob-own", "bob", topics))
        await eventually(lambda: any(isinstance(m, TaskAnswer) for m in bob.of("bob-own")), "bob's own answer")
        await eventually(lambda: not router.running, "the router to finish every task")
        await asyncio.sleep(SETTLE_S)
        reached_alice = [m for index in range(len(steered)) for m in alice.of(f"steer-{index}")]
        assert reached_alice == [], f"alice received {len(reached_alice)} replies/events of bob's tasks"
        refused = [m for index in range(len(steered)) for m in bob.of(f"steer-{index}")]
        assert refused and all(isinstance(m, ErrorReply) and m.code == "forbidden" for m in refused)
        for client in (alice.client, bob.client):
            await client.close()


def test_resending_a_task_id_re_publishes_no_run_and_gives_another_account_nothing(secured: Fleet) -> None:
    run(_resends(secured))


async def _resends(fleet: Fleet) -> None:
    topics = Topics(fleet.connection("alice").fabric)
    async with scene(fleet, answer=None) as (router, agent):  # the agent holds its runs: the task stays in flight
        alice, bob = await inbox(fleet, "alice"), await inbox(fleet, "bob")
        held = task_payload("held", "alice", topics, cot_count=3, deadline_s=120)
        for topic in submit_topics(topics, "alice"):
            await attempt(fleet.connection("alice"), topic, held)
        await eventually(lambda: len(agent.runs_of("held")) == 3, "the task's three runs")
        received = router.submissions_received
        for _ in range(5):
            for topic in submit_topics(topics, "alice"):
                await attempt(fleet.connection("alice"), topic, held)
            for topic in submit_topics(topics, "bob"):
                bobs = task_payload("held", "bob", topics, cot_count=3, deadline_s=120)
                await attempt(fleet.connection("bob"), topic, bobs)
        await eventually(lambda: router.submissions_received >= received + 10, "the ten resends at the router")
        marker = task_payload("marker", "alice", topics, cot_count=1, deadline_s=120)
        for topic in submit_topics(topics, "alice"):  # its run reaches the agent after any run re-published before
            await attempt(fleet.connection("alice"), topic, marker)
        await eventually(lambda: bool(agent.runs_of("marker")), "the marker's run")
        republished = len(agent.runs_of("held")) - 3
        assert republished == 0, f"10 resends re-published {republished} runs"
        assert [m.event for m in alice.of("held") if isinstance(m, TaskEvent)].count("resent") == 5
        assert not [m for m in bob.of("held") if isinstance(m, (TaskAnswer, TaskEvent))]  # nothing of alice's task
        runner = router.running["held"].runner if "held" in router.running else None
        assert runner is not None and not runner.done()  # and alice's task runs on
        for client in (alice.client, bob.client):
            await client.close()
