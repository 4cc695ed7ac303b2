"""Issue 19.9: one task naming a topic with a code point MQTT forbids must not silence the router.

The attacker submits tasks whose reply topic (or client id, which names the events topic) holds U+0085 (a C1
control) or U+FFFE (a non-character). Before the fix the kit accepted them; mosquitto rejects a PUBLISH on such a
topic as malformed and disconnects the router, and paho resends the message after every reconnect: ~100
disconnects in 20 s and none of 3 later tasks answered. Now the task is refused: with an ErrorReply when its reply
topic is usable, else logged and dropped; the router stays connected and answers the next tasks. (A client id
in the payload names no topic: the router takes the client from the reply topic.)
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from integration.security.attack import Processes, bounded
from support import RunningBroker, connection_for

from shared.client import FabricTaskClient, TaskFailed, TaskTimeout
from shared.errors import MessageError
from shared.messages import ErrorReply, decode
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

BAD = ["\u0085", "\ufffe", "\ufdd0", "\U0010ffff"]


def hostile_tasks(topics: Topics, own_reply: str) -> list[bytes]:
    tasks = []
    for index, character in enumerate(BAD):
        bad_reply = {"task_id": f"bad-reply-{index}", "reply_topic": topics.prefix + f"/reply/a{character}b"}
        bad_client = {"task_id": f"bad-client-{index}", "reply_topic": own_reply, "client_id": f"a{character}b"}
        for fields in (bad_reply, bad_client):
            tasks.append(json.dumps({"kind": "task_request", "v": 1, "query": "What is 1 + 1?", **fields}).encode())
    return tasks


async def attack_then_ask(broker: RunningBroker, fabric: str) -> tuple[list[str], int]:
    """Send the hostile tasks, then 3 real ones: the ErrorReply task ids the attacker got, and real answers."""
    topics = Topics(fabric)
    settings = connection_for(broker, fabric)
    own_reply = topics.reply("attacker")
    refusals: list[str] = []
    attacker = FabricClient(settings, unique_client_id("attacker"))
    await attacker.subscribe(own_reply, lambda _topic, payload: refusals.extend(_error_task_id(payload)))
    await attacker.connect()
    try:
        for payload in hostile_tasks(topics, own_reply):
            await attacker.publish_confirmed(topics.task_submit(), payload)
        async with FabricTaskClient(settings) as client:

            async def one(index: int) -> bool:
                try:
                    return bool((await client.submit(f"What is {index} + 2?", cot_count=1, timeout_s=30)).answer)
                except (TaskFailed, TaskTimeout):
                    return False

            answers = await asyncio.gather(*(one(index) for index in range(3)))
        return refusals, sum(answers)
    finally:
        await attacker.close()


def _error_task_id(payload: bytes) -> list[str]:
    try:
        message = decode(payload)
    except MessageError:
        return []
    return [message.task_id or "?"] if isinstance(message, ErrorReply) else []


def test_forbidden_code_points_in_topics_neither_disconnect_nor_silence_the_router(
    any_broker: RunningBroker, fabric: str, tmp_path: Path, subprocess_env: dict[str, str]
):
    processes = Processes(tmp_path, subprocess_env)
    common = ("--broker", any_broker.url, "--fabric", fabric)
    try:
        processes.spawn("router", "-v", "router", *common, "--router-id", "r1", ready="router r1 serving")
        node = ("start", *common, "--node-id", "n1", "--backend", "echo", "--preset", "math")
        processes.spawn("n1", *node, ready="node n1 online")
        refusals, answered = bounded(attack_then_ask(any_broker, fabric), 150)
        router_log = processes.log("router")
    finally:
        processes.stop()
    disconnects = router_log.count("disconnected from")
    print(
        f"\n[{any_broker.kind}] {len(BAD) * 2} hostile tasks: router disconnects {disconnects}, later tasks answered "
        f"{answered}/3, ErrorReplies to the attacker {sorted(refusals)}"
    )
    assert disconnects == 0, router_log[-3000:]
    assert answered == 3
    # the tasks naming a forbidden reply topic were refused (nowhere to answer: logged), none answered there
    assert router_log.count("refused a task (bad_request)") >= len(BAD), router_log[-3000:]
    assert not any(task_id.startswith("bad-reply") for task_id in refusals)
