"""Publishing desired states and watching nodes converge: `fleet apply` (at once or rolling), `fleet status`, drain.

    fleet apply --rolling N:
        canary (first changed node) ── publish ──► beacon reports the generation ──► probe task answered?
            │ no (error in the beacon, deadline, probe failed)
            └──► publish the previous desired state again (new generation), exit non-zero saying why
        then N nodes at a time, the same checks; a failing batch is rolled back and the rollout stops

`FleetLink` is the operator's connection (an operator account may write `desired/+` and `control/+`); the
decisions (`changes`, `convergence`, `rollback_of`) are pure and live in `provisioning.desired`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from provisioning.desired import Change, Convergence, convergence, rollback_of
from shared import topics as routes
from shared.client import FabricTaskClient, TaskFailed, TaskTimeout
from shared.config import ConnectionSettings
from shared.messages import DesiredState, NodeBeacon, NodeControl, encode
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

Log = Callable[[str], None]
PROBE_QUERY = "Reply with the word OK."


class FleetLink:
    """The retained desired states and beacons of a fabric, kept current, and the operator's writes."""

    def __init__(self, connection: ConnectionSettings) -> None:
        self.connection = connection
        self.topics = Topics(connection.fabric)
        self.client = FabricClient(connection, unique_client_id("fleet"))
        self.desired: dict[str, DesiredState] = {}
        self.beacons: dict[str, NodeBeacon] = {}
        self._changed = asyncio.Event()

    async def open(self, settle_s: float = 1.0) -> FleetLink:
        await self.client.route(routes.DESIREDS.on(self.topics), self._on_desired, on_clear=self._on_desired_cleared)
        await self.client.route(routes.BEACONS.on(self.topics), self._on_beacon, on_clear=self._on_beacon_cleared)
        await self.client.connect()
        await asyncio.sleep(settle_s)  # retained messages follow the SUBACK; this bounds the wait for all of them
        return self

    async def close(self) -> None:
        await self.client.close()

    def _on_desired_cleared(self, topic: str) -> None:
        self.desired.pop(self.topics.last_level(topic), None)
        self._changed.set()

    def _on_desired(self, topic: str, state: DesiredState) -> None:
        if state.node_id == self.topics.last_level(topic):
            self.desired[state.node_id] = state
        self._changed.set()

    def _on_beacon_cleared(self, topic: str) -> None:
        self.beacons.pop(self.topics.last_level(topic), None)
        self._changed.set()

    def _on_beacon(self, topic: str, beacon: NodeBeacon) -> None:
        if beacon.node_id == self.topics.last_level(topic):
            self.beacons[beacon.node_id] = beacon
        self._changed.set()

    async def publish_desired(self, node_id: str, state: DesiredState | None) -> None:
        """Publish (retained) a node's desired state; None clears it (the node runs its config file again)."""
        payload = encode(state) if state is not None else b""
        await self.client.publish_confirmed(self.topics.desired(node_id), payload, retain=True)
        if state is None:
            self.desired.pop(node_id, None)
        else:
            self.desired[node_id] = state

    async def set_drain(self, node_id: str, drain: bool, reason: str = "") -> None:
        """Order a node to drain (retained, so it holds across the node's restarts) or clear the order."""
        payload = encode(NodeControl(node_id=node_id, drain=True, reason=reason, issued_at=time.time()))
        await self.client.publish_confirmed(self.topics.control(node_id), payload if drain else b"", retain=True)

    def convergence(self, node_id: str) -> Convergence:
        return convergence(node_id, self.desired.get(node_id), self.beacons.get(node_id))

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Wait for `condition` to hold after some message (True), or `timeout_s` (False)."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                return condition()
        return True


@dataclass
class RolloutResult:
    ok: bool
    applied: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    why: str = ""


async def wait_converged(link: FleetLink, state: DesiredState, deadline_s: float) -> str:
    """Wait until the node reports `state`'s generation online (""), or say why not (its error, or the deadline)."""
    node_id, generation = state.node_id, state.generation

    def settled() -> bool:
        beacon = link.beacons.get(node_id)
        if beacon is None:
            return False
        running = beacon.generation == generation and beacon.status == "online"
        failed = beacon.desired_generation == generation and bool(beacon.desired_error)
        return running or failed

    if not await link.wait_until(settled, deadline_s):
        return f"node {node_id} did not report generation {generation} within {deadline_s:g} s"
    beacon = link.beacons[node_id]
    if beacon.generation != generation:
        return f"node {node_id} could not apply generation {generation}: {beacon.desired_error}"
    return ""


async def probe(connection: ConnectionSettings, state: DesiredState, deadline_s: float) -> str:
    """Ask each new agent of the node one direct question; "" when every one answered, else why not."""
    try:
        async with FabricTaskClient(connection) as client:
            for agent in state.agents:
                try:
                    await client.submit(
                        PROBE_QUERY,
                        agent_id=agent.agent_id,
                        cot_count=1,
                        plan_k=1,
                        max_tokens=8,
                        deadline_s=deadline_s,
                        trace="summary",
                        timeout_s=deadline_s,
                        resend_every_s=min(5.0, deadline_s),
                    )
                except (TaskFailed, TaskTimeout) as error:
                    return f"probe of agent {agent.agent_id} on {state.node_id} failed: {error}"
    except OSError as error:
        return f"probe could not reach the fabric: {error}"
    return ""


async def apply_batch(
    link: FleetLink, batch: Sequence[Change], deadline_s: float, probe_connection: ConnectionSettings | None
) -> str:
    """Publish a batch of changes and check each node (convergence, then the probe); "" or why it failed."""
    for change in batch:
        await link.publish_desired(change.node_id, change.new)
    results = await asyncio.gather(*(wait_converged(link, change.new, deadline_s) for change in batch))
    failures = [why for why in results if why]
    if failures:
        return "; ".join(failures)
    if probe_connection is not None:
        for change in batch:
            why = await probe(probe_connection, change.new, deadline_s)
            if why:
                return why
    return ""


async def roll_back(link: FleetLink, batch: Sequence[Change], issued_by: str, deadline_s: float, log: Log) -> None:
    for change in batch:
        state = rollback_of(change, change.new.generation, issued_by)
        await link.publish_desired(change.node_id, state)
        what = f"generation {state.generation}" if state else "its own config file (desired state cleared)"
        log(f"rolled back {change.node_id} to {what}")
    for change in batch:
        state = link.desired.get(change.node_id)
        if state is not None:
            why = await wait_converged(link, state, deadline_s)
            if why:
                log(f"warning: {why}")


async def roll_out(
    link: FleetLink,
    changes: Sequence[Change],
    batch_size: int | None,
    deadline_s: float,
    issued_by: str,
    probe_connection: ConnectionSettings | None = None,
    log: Log = print,
) -> RolloutResult:
    """Apply `changes`: all at once (batch_size None), or a canary then `batch_size` at a time."""
    result = RolloutResult(ok=True)
    if not changes:
        return result
    if batch_size is None:
        batches = [list(changes)]
    else:
        rest = list(changes[1:])
        batches = [[changes[0]]] + [rest[i : i + batch_size] for i in range(0, len(rest), batch_size)]
    for index, batch in enumerate(batches):
        names = ", ".join(change.node_id for change in batch)
        label = "canary" if batch_size is not None and index == 0 else f"batch {index}"
        log(f"{label}: {names} -> " + ", ".join(f"generation {c.new.generation}" for c in batch))
        why = await apply_batch(link, batch, deadline_s, probe_connection)
        if why:
            log(f"{label} failed: {why}")
            await roll_back(link, batch, issued_by, deadline_s, log)
            result.ok, result.why = False, f"{label} failed: {why}"
            result.rolled_back = [change.node_id for change in batch]
            return result
        result.applied += [change.node_id for change in batch]
        log(f"{label} converged: {names}")
    return result
