"""Issue 19, item 5: only teacher accounts teach the router. Bob's gold answers, benchmark labels and
requirements leave LinUCB, the vote weights and the priors as his task's own vote would; alice, a teacher, teaches.
And a node speaks only for itself: its state names its own node id, its beacon cannot take another node's agent,
a router's presence names its own router id (both brokers; each account writes only where its ACL lets it)."""

from __future__ import annotations

import time

from integration.security.tenancy_scene import AGENT, eventually, run, scene
from secured import Fleet

from shared.client import FabricTaskClient
from shared.messages import AgentInfo, AgentState, NodeBeacon, NodeState, RouterPresence
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics


def labels(router: object) -> set[str]:
    rows = router.brain.priors.to_dict()["counts"]  # type: ignore[attr-defined]
    return {str(part) for row in rows for part in row[1:4]}


def test_only_a_teacher_account_teaches_the_router(secured: Fleet) -> None:
    run(_teachers(secured))


async def _teachers(fleet: Fleet) -> None:
    async with scene(fleet, answer="7", teachers=("alice",)) as (router, _agent):
        async with FabricTaskClient(fleet.connection("bob")) as bob:
            await bob.submit(
                "What is 3 + 4?", gold_answer="9", benchmark="junk-bob", requirements=("poetry",), cot_count=1
            )
        assert not {"junk-bob", "poetry"} & labels(router), "bob's labels keyed the priors"
        # The run agreed with its own vote: bob's (wrong) gold answer did not turn that into a penalty.
        assert router.brain.weight(AGENT) > 0.5, (
            f"bob's gold answer moved the vote weight to {router.brain.weight(AGENT)}"
        )
        async with FabricTaskClient(fleet.connection("alice")) as alice:
            await alice.submit(
                "What is 3 + 4?", gold_answer="7", benchmark="gsm8k", requirements=("math",), cot_count=1
            )
        assert {"gsm8k", "math"} <= labels(router)


def test_a_node_or_router_speaks_only_for_itself(secured: Fleet) -> None:
    run(_ids(secured))


async def _ids(fleet: Fleet) -> None:
    topics = Topics(fleet.connection("hub").fabric)
    async with scene(fleet, answer=None) as (router, agent):
        node_b = FabricClient(fleet.connection("node-b"), unique_client_id("node-b"))
        await node_b.connect()
        writer = AgentInfo(agent_id="node-b-writer", backend="echo", model="echo", max_in_flight=1)
        epoch = int(time.time() * 1000)
        online = NodeBeacon(node_id="node-b", epoch=epoch, instance_id="b", status="online", agents=(writer,))
        await node_b.publish_confirmed(topics.beacon("node-b"), online, retain=True)
        await eventually(lambda: "node-b-writer" in {v.agent_id for v in router.live_agents()}, "node-b's agent")
        # node-a, on the topics its own account may write: a state naming node-b, a beacon claiming node-b's agent
        assert agent.client is not None
        busy = AgentState(agent_id="node-b-writer", load=1.0, in_flight=9, queue_length=9, available=False)
        await agent.client.publish_confirmed(
            topics.state("node-a"), NodeState(node_id="node-b", epoch=epoch, agents=(busy,))
        )
        stolen = writer.model_copy(update={"capabilities": ("math", "planning"), "cost_per_1k_tokens": 0.0})
        mine = AgentInfo(agent_id=AGENT, backend="echo", model="echo", max_in_flight=64)
        claim = NodeBeacon(node_id="node-a", epoch=epoch + 1, instance_id="a2", status="online", agents=(mine, stolen))
        await agent.client.publish_confirmed(topics.beacon("node-a"), claim, retain=True)
        # a router account announcing another router id (every task hashed to it would go unanswered)
        rogue = FabricClient(fleet.connection("hub"), unique_client_id("rogue-router"))
        await rogue.connect()
        ghost = RouterPresence(router_id="ghost", instance_id="g", epoch=1, status="online", sent_at=time.time())
        await rogue.publish_confirmed(topics.router_presence("hub"), ghost)
        await rogue.publish_confirmed(topics.router_presence("hub"), router._presence("online"), retain=True)
        await eventually(lambda: router.registry.nodes["node-a"].beacon.epoch == epoch + 1, "node-a's new beacon")
        (view,) = [v for v in router.live_agents() if v.agent_id == "node-b-writer"]
        assert view.node_id == "node-b", "node-a took node-b's agent over"
        assert view.available and view.load == 0.0, "node-a's state spoke for node-b"
        assert "ghost" not in router.roster.presences, "a presence named another router"
        for client in (node_b, rogue):
            await client.close()
