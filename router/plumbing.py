"""What the router's two handler groups share: its state, publishing, decoding, and the runs in flight.

    RouterService (router.service: lifecycle, subscriptions)
      ├─ FleetStateHandlers (router.fleet_state): beacons, states, router presences, the ledger of every router
      └─ TaskHandlers (router.tasks): submissions, cancels, the pipeline of each task, the inbox, events, streams
           both on RouterPlumbing (here): the state they share, and the few operations both need

The state itself is created by `RouterService.__init__`; the annotations below say what each group may use.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from router.bidding import BidCollector
from router.brain import RoutingBrain
from router.ledger import TaskLedger
from router.pipeline import UNREACHED_NODE
from router.registry import AgentRegistry, RouterRoster
from router.routed_task import PendingRun, RoutedTask
from router.screening import AgentView
from router.site_role import SiteRole
from router.tenancy import AccountTasks
from shared.errors import MessageError
from shared.messages import (
    ErrorKind,
    ErrorReply,
    LedgerEntry,
    RouterPresence,
    RouterStatus,
    RunRequest,
    RunResult,
    TaskAnswer,
    TaskChunk,
    decode,
    encode,
)
from shared.mqtt import FabricClient, PayloadTooLarge
from shared.topics import Topics

log = logging.getLogger(__name__)


class RouterPlumbing:
    """The router's shared state and plumbing (see the module docstring)."""

    config: Any  # router.service.RouterConfig
    router_id: str
    instance_id: str
    epoch: int
    topics: Topics
    reply_topic: str
    registry: AgentRegistry
    roster: RouterRoster
    brain: RoutingBrain
    bids: BidCollector
    ledger: TaskLedger
    ledger_echoes: LedgerEchoes
    client: FabricClient | None
    _ledger_heard: int
    _joined: bool
    _stopping: bool
    running: dict[str, RoutedTask]  # the tasks this router runs, by task id (router.routed_task)
    relayed_runs: dict[str, PendingRun]  # runs placed for another site's router, by dispatch id (router.relay)
    _account_tasks: AccountTasks  # tasks in flight per client account (router.tenancy)
    sites: SiteRole | None  # a multi-site fleet's part (router.site_role)
    full_traces_until: float  # time.monotonic() until which every task traces in full (an observer asked)
    runs_dispatched: int
    submissions_received: int

    def _publish(self, topic: str, message: Any, qos: int = 1, retain: bool = False) -> None:
        assert self.client is not None
        try:
            self.client.publish(topic, message, qos=qos, retain=retain)
        except PayloadTooLarge as error:  # above the fabric's message size limit: the client hears why
            log.warning("not published on %s: %s", topic, error)
            if isinstance(message, (TaskAnswer, TaskChunk)):
                reply = ErrorReply(code="too_large", message=str(error)[:4000], task_id=message.task_id)
                self.client.publish(topic, reply, qos=qos)

    def _decode_or_log(self, payload: bytes, expected: type[Any]) -> Any:
        try:
            return decode(payload, expected)
        except MessageError as error:
            log.info("ignoring a malformed %s: %s", expected.__name__, error)
            return None

    def _presence(self, status: RouterStatus) -> RouterPresence:
        return RouterPresence(
            router_id=self.router_id,
            instance_id=self.instance_id,
            epoch=self.epoch,
            status=status,
            sent_at=time.time(),
            site=self.config.connection.site,
        )

    def live_agents(self) -> Sequence[AgentView]:
        return self.registry.live_agents(time.monotonic(), self.brain.reliability)

    def _live_instances(self) -> dict[str, str]:
        return {r: p.instance_id for r, p in self.roster.presences.items() if p.status == "online"}

    def _publish_ledger(self, entry: LedgerEntry) -> None:
        """Share a ledger entry (already applied here) with the other routers, retained; its echo is skipped."""
        self.ledger_echoes.sent(encode(entry))
        self._publish(self.topics.ledger(entry.task_id), entry, retain=True)

    def _clear_ledger(self, task_id: str) -> None:
        assert self.client is not None
        self.client.publish(self.topics.ledger(task_id), b"", retain=True)

    def _reask(self, wanted: Any) -> int:
        """Send the outstanding runs that `wanted(request)` picks again (same dispatch id); returns how many."""
        again = [run.request for run in self._outstanding_runs() if wanted(run.request)]
        for request in again:
            self._publish(self.topics.agent_run(request.agent_id), request)
        return len(again)

    def _fail_pending(self, agent_ids: set[str], reason: str) -> None:
        for run in self._outstanding_runs():
            if run.request.agent_id in agent_ids:
                run.result.set_result(failed_result(run.request, "backend_error", reason))

    def _outstanding_runs(self) -> list[PendingRun]:
        """Every run awaited now: our tasks' and the ones placed for other sites' routers."""
        relayed = [run for run in self.relayed_runs.values() if not run.result.done()]
        return [run for task in self.running.values() for run in task.outstanding()] + relayed


class LedgerEchoes:
    """The ledger entries this router published, until the broker sends them back to it (ledger/+ is ours too).

    Our own entry was applied before it was sent, so its echo needs no decoding or applying; with a claim and an
    answer per task, that is two of the router's inbound messages per task. Bounded: an echo never heard (a
    reconnect lost it) is forgotten after MAX_ECHOES newer entries.
    """

    MAX_ECHOES = 4096

    def __init__(self) -> None:
        self._payloads: OrderedDict[bytes, None] = OrderedDict()

    def sent(self, payload: bytes) -> None:
        self._payloads[payload] = None
        while len(self._payloads) > self.MAX_ECHOES:
            self._payloads.popitem(last=False)

    def is_echo(self, payload: bytes) -> bool:
        """True (once) for the bytes of an entry we sent."""
        if payload in self._payloads:
            del self._payloads[payload]
            return True
        return False


def failed_result(request: RunRequest, kind: ErrorKind, message: str) -> RunResult:
    """The result of a run that produced nothing (timeout, agent death, refusal)."""
    return RunResult(
        dispatch_id=request.dispatch_id,
        task_id=request.task_id,
        agent_id=request.agent_id,
        node_id=UNREACHED_NODE,
        error=kind,
        error_message=message,
    )
