"""The router's fleet-state handlers: who is live (nodes, agents, routers) and what every router claimed/answered.

    beacon/+          ─► AgentRegistry; a node gone (decommissioned, a new process, offline past its grace)
                         fails our runs on its agents; a node (re)announced is asked our outstanding runs again
    state/+           ─► AgentRegistry (load, queue, latency)
    router/+          ─► RouterRoster (rendezvous hashing picks each task's owner); a router that joins gets the
                         answers it now owns, retained; our own Will heard while we live is denied
    ledger/+          ◄─► TaskLedger: claims and answers of every router; expired entries are cleared, and our
                         claims on long tasks renewed

Part of RouterService (router.service); the state it reads is described in router.plumbing.
"""

from __future__ import annotations

import asyncio
import time

from router.ownership import rendezvous_owner
from router.plumbing import RouterPlumbing
from shared.messages import LedgerEntry, NodeBeacon, NodeState, RouterPresence


class FleetStateHandlers(RouterPlumbing):
    """Beacons, states, router presences and the shared ledger (see the module docstring)."""

    def _on_beacon_cleared(self, topic: str) -> None:
        node_id = self.topics.last_level(topic)
        self._fail_pending(self.registry.agent_ids_of(node_id), "node decommissioned")
        self.registry.forget_node(node_id)

    def _on_beacon(self, topic: str, beacon: NodeBeacon) -> None:
        node_id = self.topics.last_level(topic)
        if beacon.node_id != node_id:
            return
        previous = self.registry.nodes.get(node_id)
        if not self.registry.apply_beacon(beacon, time.monotonic()):
            return
        agent_ids = self.registry.agent_ids_of(node_id)  # not an agent id another live node holds
        if beacon.status == "offline":  # a broker that restarts may publish every Will: the node may come back
            loop = asyncio.get_running_loop()
            loop.call_later(self.config.offline_grace_s, self._fail_if_offline, node_id, agent_ids, beacon.epoch)
        elif previous is not None and previous.beacon.epoch != beacon.epoch:  # a new process: our runs died
            self._fail_pending(agent_ids, f"node {node_id} restarted")
        else:  # (re)announced, e.g. after a broker restart: it may have missed our runs, or we its results
            self._reask(lambda request: request.agent_id in agent_ids)

    def _fleet_settling_s(self) -> float:
        """Seconds until the nodes have had their chance to re-announce to us (0: they have had it).

        A broker that stops may publish every node's Will just before it goes. While we are cut off, nothing can
        be known; right after our own reconnect, every node comes back at its own reconnect pace (a growing
        delay, seconds) and gets `agent_wait_s`, the time a task waits for agents. (Not after our first connect:
        nothing of ours is in flight then.)
        """
        assert self.client is not None
        if not self.client.is_connected:
            return self.config.offline_grace_s
        since = self.client.connected_since
        if self.client.connect_count > 1 and since is not None:
            return max(0.0, since + self.config.agent_wait_s - time.monotonic())
        return 0.0

    def _fail_if_offline(self, node_id: str, agent_ids: set[str], epoch: int) -> None:
        """A node's offline Will's grace is over: fail our runs on its agents unless it came back (or may yet)."""
        settling_s = self._fleet_settling_s()
        if settling_s > 0:
            asyncio.get_running_loop().call_later(settling_s, self._fail_if_offline, node_id, agent_ids, epoch)
            return
        record = self.registry.nodes.get(node_id)
        # Back as the same process: its runs go on. Back as a new process: the old one's runs failed when it
        # announced itself (`_on_beacon`), and the runs pending now are the new process's own.
        if record is None or not record.online:
            self._fail_pending(agent_ids, f"node {node_id} went offline")

    def _on_state(self, topic: str, state: NodeState) -> None:
        if state.node_id != self.topics.last_level(topic):
            return  # a node speaks only for itself (it may write only its own state topic)
        self.registry.apply_state(state, time.monotonic())

    def _on_presence_cleared(self, topic: str) -> None:
        self.roster.forget(self.topics.last_level(topic))

    def _on_presence(self, topic: str, presence: RouterPresence) -> None:
        if presence.router_id != self.topics.last_level(topic):
            return  # a router speaks only for itself (it may write only its own presence topic)
        if presence.router_id == self.router_id:
            self._deny_own_will(presence)
            return
        known = self.roster.presences.get(presence.router_id)
        self.roster.apply(presence)
        if self.sites is not None and presence.status == "offline":  # its site is unreachable through it
            self.sites.directory.forget_router(presence.router_id)
        new_instance = known is None or known.instance_id != presence.instance_id
        if self._joined and presence.status == "online" and new_instance:
            self._hand_over_answers(presence.router_id)

    def _deny_own_will(self, presence: RouterPresence) -> None:
        """Our own Will, published while we live (a NATS cluster publishes it late, when it takes over the session
        of a connection that died with a server): announce ourselves again, or the other routers take our tasks."""
        ours = presence.status == "offline" and presence.instance_id == self.instance_id
        if ours and self._joined and not self._stopping and self.client is not None:
            self.client.publish(self.topics.router_presence(self.router_id), self._presence("online"), retain=True)

    def _hand_over_answers(self, router_id: str) -> None:
        """A router joined or came back as a new instance: share again, retained, the answers it owns now. It read
        the retained ledger when it started, but a broker may have lost entries (NATS drops a retained message
        published while its stream re-elects a leader, and tells no one)."""
        live = self.roster.live()
        for entry in self.ledger.answered_entries(time.time()):
            if rendezvous_owner(entry.task_id, live) == router_id:
                self._publish_ledger(entry)

    def _on_ledger(self, topic: str, payload: bytes) -> None:
        # A raw subscription (not a typed route): our own entries come back and are skipped by their bytes,
        # undecoded (two of the router's inbound messages per task), and every message counts for the join.
        self._ledger_heard += 1
        task_id = self.topics.last_level(topic)
        if not payload:
            self.ledger.forget(task_id)
            return
        if self.ledger_echoes.is_echo(payload):
            return  # our own entry, applied when we sent it
        entry = self._decode_or_log(payload, LedgerEntry)
        if entry is None or entry.task_id != task_id:
            return
        if not self.ledger.apply(entry, time.time()) and self.ledger.is_expired(entry, time.time()):
            self._clear_ledger(task_id)

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self.config.answer_retention_s / 4))
            self.keep_ledger(time.time())

    def keep_ledger(self, now: float) -> None:
        """Renew our claims on tasks that run longer than half the retention window; clear expired entries."""
        for task_id in list(self.running):
            claim = self.ledger.get(task_id)
            if claim is not None and claim.status == "running" and now - claim.at > self.ledger.retention_s / 2:
                renewed = claim.model_copy(update={"at": now})
                self.ledger.apply(renewed, now)
                self._publish_ledger(renewed)
        for task_id in self.ledger.expire(now):
            self._clear_ledger(task_id)
