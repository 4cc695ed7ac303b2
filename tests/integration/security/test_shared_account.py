"""Issue 19 (client ids): two processes of one client account each get every reply to their own tasks.

The gateway builds its task client as `FabricTaskClient(connection, client_id=<account>)` and stays connected;
`edge-agent submit -c clients/alice.yaml` connects with the same account meanwhile. Before the fix both used the
account name as their MQTT client id, so the broker kept one session: on the embedded broker the gateway lost its
subscriptions (0 of 3 replies), on mosquitto the two connections kicked each other off.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from integration.security.attack import Processes, bounded, provisioned_fleet
from secured import Fleet
from support import REPO

from shared.client import FabricTaskClient, TaskFailed, TaskTimeout

TASKS = 3
DEADLINE_S = 20.0


async def answered_by_both(fleet: Fleet, processes: Processes) -> tuple[int, int]:
    """Replies the gateway-style client and the `submit` processes each got, out of TASKS."""
    gateway = FabricTaskClient(fleet.connection("alice"), client_id="alice")  # as fleet_gateway.fabric builds it
    await gateway.connect()
    try:
        gateway_answered = submit_answered = 0
        for index in range(TASKS):  # one `edge-agent submit` process, then one task of the (still connected) gateway
            command = [sys.executable, "-m", "edge_agent.cli", "submit", "-c", str(fleet.config_file("alice"))]
            command += ["--cot-count", "1", "--timeout", str(DEADLINE_S), "--no-trace", f"What is {index} * 2?"]
            result = await asyncio.to_thread(
                subprocess.run, command, env=processes.env, cwd=REPO, capture_output=True, timeout=DEADLINE_S + 30
            )
            submit_answered += result.returncode == 0
            try:
                await gateway.submit(f"What is {index} + {index}?", cot_count=1, deadline_s=DEADLINE_S)
                gateway_answered += 1
            except (TaskFailed, TaskTimeout):
                pass
        return gateway_answered, submit_answered
    finally:
        await gateway.close()


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_the_gateway_and_submit_sharing_an_account_both_get_their_replies(kind: str, tmp_path: Path, fabric: str):
    with provisioned_fleet(kind, tmp_path, fabric) as (fleet, processes):
        gateway, submit = bounded(answered_by_both(fleet, processes), 240)
    print(f"\n[{kind}] one account, two processes: gateway {gateway}/{TASKS}, edge-agent submit {submit}/{TASKS}")
    assert (gateway, submit) == (TASKS, TASKS)
