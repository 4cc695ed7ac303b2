"""The router as MQTT topic handlers: registry, task ownership, the pipeline per task, replies and trace.

RouterService (here) owns the lifecycle (connect, join, announce, save, stop) and the subscriptions; its handlers
live in two groups: fleet state (router.fleet_state: beacons, states, presences, ledger) and tasks (router.tasks:
submissions, the pipeline, inbox, events, streams), over the state they share (router.plumbing).

    beacon/+, state/+          ─► AgentRegistry (who is live, how loaded)
    router/+                   ─► RouterRoster (rendezvous hashing picks each task's owner)
    task/submit/{client}       ─► TaskPipeline (if we own the task) ─► reply/{client}: TaskAnswer | ErrorReply
                                  (the account in the topic is who asked: router.tenancy binds and caps it)
                                  TaskCancel ─► the task stops (its runs are cancelled)
    ledger/+  (router-only)    ◄─► TaskLedger: retained claims and answers of every router (router.ledger), so
                                   an answered id is replayed by whichever router owns it and no task is started
                                   while another live router instance runs it
    router/{id}/inbox          ─► the pending dispatch's future (RunResult, or ErrorReply such as busy)
                                  RunChunk of a streamed run ─► TaskChunk on the task's reply topic
    agent/{id}/run             ◄─ RunRequest, and RunCancel for a run no longer awaited (early stop, deadline)
    task/{client}/{task}/events ◄─ trace events (gold answers stripped), in the submitting client's namespace:
                                  the answer alone unless the task asked for its full trace (or an observer did:
                                  trace/request); progress TaskChunks of a streamed vote go on its reply topic
    trace/request              ─► a dashboard watches: tasks started within its request trace in full

Handlers only decode, call the core, and encode; a malformed message is answered with an ErrorReply on its
account's reply topic, and never affects other tasks. Replies and events follow from the submitting account,
never from the payload: a task naming another client's reply topic is refused (`forbidden`). On an anonymous
fabric the legacy `task/submit` is read too, its account the owner of its reply topic; a reply topic outside
`{p}/reply/{id}` (a wildcard, `$SYS`, another fabric, a node's topic) is logged and dropped unanswered.

Nothing lost: a router joins only after the retained ledger arrived (`join_sync_s`); a client's resend of a task
in flight is acknowledged (a `resent` event) without sending its runs again; after a reconnect, and when a
node (re)announces itself, the outstanding runs are re-asked. A re-asked run keeps its dispatch id: the agent
runs it only if it never got it, else it sends the result again (see edge_agent.runtime.recent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from functools import cached_property
from pathlib import Path

from router.bidding import BidCollector
from router.brain import RoutingBrain, write_state
from router.cost_policy import CostAwarePolicy, CostPolicyConfig
from router.fleet_state import FleetStateHandlers
from router.identity import resolve_identity
from router.ledger import TaskLedger
from router.locality import LocalityPolicy
from router.plumbing import LedgerEchoes
from router.registry import AgentRegistry, RouterRoster, parse_state
from router.routed_task import PendingRun, RoutedTask, without_gold
from router.site_role import SiteRole
from router.tasks import TaskHandlers
from router.tenancy import AccountTasks, Tenancy
from shared import topics as routes
from shared.config import ConnectionSettings, Id, RouterSettings
from shared.delivery import subscription
from shared.messages import (
    RebirthRequest,
    TaskCancel,
    TaskRequest,
    encode,
)
from shared.mqtt import FabricClient, Handler, WillMessage, unique_client_id
from shared.topics import TopicRoute, Topics

log = logging.getLogger(__name__)
__all__ = ["RouterConfig", "RouterService", "hosted_router", "router_config", "without_gold"]


class RouterConfig(RouterSettings):
    """A running router's settings: the node file's `router:` section (RouterSettings, so a setting is written once),
    with the router's resolved id and state file, its connection, and the knobs only code and tests turn."""

    router_id: Id  # resolved (router.identity): never None here
    connection: ConnectionSettings
    frozen: bool = False  # evaluation: route with the saved state, learn nothing (`edge-agent router --frozen`)
    join_sync_s: float = 0.3  # quiet time on the retained ledger before a (re)started router takes work
    join_sync_max_s: float = 5.0
    offline_grace_s: float = 1.5  # an offline node's runs fail only if it is not back (same process) by then
    agent_wait_s: float = 5.0  # a task that finds no live agent waits this long (at most half its deadline)
    cancel_runs: bool = True  # tell agents to stop runs no longer awaited (off only to measure what it saves)

    @cached_property
    def locality(self) -> LocalityPolicy:
        """When to cross a WAN link (router/locality.py), from `local_load_threshold` and `link_cost`."""
        return LocalityPolicy(load_threshold=self.local_load_threshold, link_cost=self.link_cost)

    @cached_property
    def tenancy(self) -> Tenancy:
        """Teachers, the deadline cap and per-account caps (router.tenancy)."""
        return Tenancy.from_settings(self)


class RouterService(FleetStateHandlers, TaskHandlers):
    """Hosts the routing and voting handlers for one fabric."""

    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.router_id = config.router_id
        self.topics = Topics(config.connection.fabric)
        self.reply_topic = self.topics.router_inbox(self.router_id)
        self.instance_id = uuid.uuid4().hex[:12]
        self.epoch = int(time.time() * 1000)
        self.registry = AgentRegistry(config.stale_after_s)
        self.roster = RouterRoster()
        self.brain = self._load_brain()
        self.bids = BidCollector()
        self.client: FabricClient | None = None
        self.ledger = TaskLedger(config.answer_retention_s, config.ledger_size)
        self.ledger_echoes = LedgerEchoes()  # our entries, skipped when the broker sends them back
        self._ledger_heard = 0  # ledger messages received (the join waits until they stop coming)
        self._joined = False
        self._stopping = False
        self.running: dict[str, RoutedTask] = {}  # the tasks we run: one record each, dropped when answered
        self.relayed_runs: dict[str, PendingRun] = {}  # runs placed for other sites' routers (router.relay)
        self.full_traces_until = 0.0  # an observer's TraceRequest: tasks started before this trace in full
        self._account_tasks = AccountTasks()  # tasks in flight per client account (its `tasks` cap)
        self._background: list[asyncio.Task[None]] = []
        self.runs_dispatched = 0
        self.submissions_received = 0  # every task/submit message this router decoded (its share, in a group)
        self.sites = SiteRole(self, config.summary_interval_s) if config.site_summaries else None

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        presence_topic = self.topics.router_presence(self.router_id)
        will = WillMessage(presence_topic, encode(self._presence("offline")))
        self.client = FabricClient(self.config.connection, unique_client_id(f"router-{self.router_id}"), will=will)
        self.client.on_connected(self._announce)
        for topic_filter, handler in self.subscriptions().items():
            await self.client.subscribe(topic_filter, handler)
        await self.client.connect()
        await self._sync_ledger()
        self._joined = True
        self.roster.apply(self._presence("online"))
        self._announce()
        self._background.append(asyncio.create_task(self._save_forever(), name=f"router[{self.router_id}].save"))
        self._background.append(asyncio.create_task(self._expire_forever(), name=f"router[{self.router_id}].ledger"))
        summaries = self.sites.start() if self.sites is not None else None
        self._background += [summaries] if summaries is not None else []

    async def _sync_ledger(self) -> None:
        """Wait until the retained ledger stopped arriving (bounded), so we know every claim and answer first."""
        deadline = time.monotonic() + self.config.join_sync_max_s
        heard = -1
        while heard != self._ledger_heard and time.monotonic() < deadline:
            heard = self._ledger_heard
            await asyncio.sleep(self.config.join_sync_s)

    def subscriptions(self) -> dict[str, Handler]:
        """Every filter the router reads, with its handler: typed routes (`shared.topics`), and the ledger raw."""
        topics, router_id = self.topics, self.router_id
        submits = [routes.TASK_SUBMISSIONS.on(topics)] + (
            [routes.TASK_SUBMIT.on(topics)] if self._reads_legacy_submit() else []
        )
        return dict(
            [
                subscription(routes.BEACONS.on(topics), self._on_beacon, on_clear=self._on_beacon_cleared),
                subscription(routes.STATES.on(topics), self._on_state, decoder=parse_state),
                subscription(routes.ROUTER_PRESENCES.on(topics), self._on_presence, on_clear=self._on_presence_cleared),
                *(subscription(self._shared(s), self._on_submit, on_invalid=self._on_bad_submit) for s in submits),
                subscription(routes.ROUTER_INBOX.on(topics, router_id), self._on_inbox),
                subscription(routes.ROUTER_BIDS.on(topics, router_id), self._on_bid),
                subscription(routes.TRACE_REQUESTS.on(topics), self._on_trace_request),
                *(self.sites.subscriptions() if self.sites is not None else []),
                (topics.ledgers(), self._on_ledger),  # raw: our echoes are skipped undecoded (router.fleet_state)
            ]
        )

    def _shared(self, submit: TopicRoute[TaskRequest | TaskCancel]) -> TopicRoute[TaskRequest | TaskCancel]:
        """task/submit/+, shared by the routers of a group when one is configured (each task reaches one of them)."""
        return submit.shared_by(self.topics, self.config.share_group)

    async def stop(self) -> None:
        self._stopping = True
        for runner in [*self._background, *(task.runner for task in self.running.values() if task.runner)]:
            runner.cancel()
        self.save()
        if self.client is not None:
            offline = (self.topics.router_presence(self.router_id), encode(self._presence("offline")), True)
            await self.client.close(final_messages=[offline, *(self.sites.final_messages() if self.sites else [])])

    def save(self) -> None:
        if self.config.state_file is not None and not self.config.frozen:
            self.brain.save(self.config.state_file)

    def _load_brain(self) -> RoutingBrain:
        cost_policy = None
        if self.config.policy == "cost_aware":
            cost_policy = CostAwarePolicy(CostPolicyConfig(frozen=self.config.frozen))
        if self.config.state_file is None:
            brain = RoutingBrain(seed=self.config.seed)
            brain.cost_policy = cost_policy
            return brain
        return RoutingBrain.load(self.config.state_file, self.config.seed, self.config.frozen, cost_policy)

    async def _save_forever(self) -> None:
        """Save the learning state every `save_interval_s`: snapshot on the loop (which alone mutates the brain),
        write in a thread; a failed save is logged and the next one tried (a full disk must not end saving)."""
        path = self.config.state_file
        while True:
            await asyncio.sleep(self.config.save_interval_s)
            if path is None or self.config.frozen:
                continue
            try:
                await asyncio.to_thread(write_state, path, self.brain.to_dict())
            except Exception as error:  # OSError mostly; any failure of one save must leave the next one to run
                log.warning("could not save the router state to %s (%s); trying again later", path, error)

    def _announce(self) -> None:
        """On every (re)connect once joined: announce ourselves, and re-ask the runs whose results may be lost."""
        assert self.client is not None
        if not self._joined:
            return  # the first connect: start() announces once the ledger is synced
        self.client.publish(self.topics.router_presence(self.router_id), self._presence("online"), retain=True)
        if self.client.connect_count > 1:
            self._reask(lambda request: True)
        if self.config.rebirth_on_connect:  # brokers that lose retained beacons or keep them node-local
            self.request_rebirth()

    def request_rebirth(self, spread_s: float = 1.0) -> None:
        """Ask every live node to republish its beacon (Sparkplug's rebirth); answers come within `spread_s`."""
        assert self.client is not None
        request = RebirthRequest(router_id=self.router_id, spread_s=spread_s, sent_at=time.time())
        self.client.publish(self.topics.rebirth(), request)


def router_config(
    connection: ConnectionSettings, settings: RouterSettings | None, state_dir: Path, frozen: bool = False
) -> RouterConfig:
    """The router's settings; its id and state file are stable across restarts (see router.identity)."""
    settings = settings or RouterSettings()
    identity = resolve_identity(state_dir, settings.router_id, settings.state_file)
    resolved = {"router_id": identity.router_id, "state_file": identity.state_file}
    return RouterConfig(**{**dict(settings), **resolved}, connection=connection, frozen=frozen)


@contextlib.asynccontextmanager
async def hosted_router(
    connection: ConnectionSettings, settings: RouterSettings | None, state_dir: Path
) -> AsyncIterator[RouterService]:
    """Run a router for the lifetime of the context (used by `edge-agent start --router` and the demo)."""
    service = RouterService(router_config(connection, settings, state_dir))
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
