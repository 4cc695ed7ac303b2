"""A router's part in a multi-site fleet (docs/sites.md), beside its service: summaries in and out, the site agent.

    site/+/summary            ─► SiteDirectory (other sites, as one `site:{site}` agent each)
    site/{site}/summary       ◄─ this site's summary: on a schedule and on change (router/summaries.py)
    agent/site:{site}/run     ─► SiteAgent: a run asked of this site, placed on one of its boards (router/relay.py)

`task_brain` gives each task the locality-aware view of the router's brain (router/locality.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from router.brain import RoutingBrain
from router.candidates import LivePool
from router.locality import SiteScopedBrain
from router.relay import SiteAgent
from router.screening import AgentView
from router.summaries import SiteDirectory, SummarySchedule, summary_entries
from shared import topics as routes
from shared.delivery import subscription
from shared.messages import RunCancel, RunRequest, RunResult, SiteSummary, TaskRequest
from shared.mqtt import Handler
from shared.topics import site_agent_id

RouterService = Any  # router.service.RouterService (not imported: the service imports this module)

log = logging.getLogger(__name__)
STALE_INTERVALS = 3  # a summary older than this many publishing intervals is ignored


class SiteRole:
    """Reads the sites' summaries; with a site of its own, publishes it and serves the site's agent."""

    def __init__(self, service: RouterService, interval_s: float) -> None:
        self.service = service
        self.site = service.config.connection.site
        self.interval_s = interval_s
        self.directory = SiteDirectory(stale_after_s=STALE_INTERVALS * interval_s)
        self.schedule = SummarySchedule(interval_s)
        self.agent = SiteAgent(service.brain, self.local_agents, service.run, service.reply_topic)
        self.published = 0
        self._wake = asyncio.Event()

    def subscriptions(self) -> list[tuple[str, Handler]]:
        """The routes this part reads (subscribed with the service's, `RouterService.subscriptions`)."""
        topics = self.service.topics
        found = [subscription(routes.SITE_SUMMARIES.on(topics), self._on_summary, on_clear=self._on_summary_cleared)]
        if self.site is not None:
            found.append(subscription(routes.AGENT_RUN.on(topics, site_agent_id(self.site)), self._on_run))
        return found

    def start(self) -> asyncio.Task[None] | None:
        if self.site is None:
            return None
        return asyncio.create_task(self._publish_forever(), name=f"router[{self.service.router_id}].summary")

    # --- summaries ----------------------------------------------------------------------------------------

    def local_agents(self) -> Sequence[AgentView]:
        pool = self.service.live_agents()
        return pool.split_by_site(self.site)[0] if isinstance(pool, LivePool) else pool

    def summary(self, now: float) -> SiteSummary | None:
        """This site's summary now, or None when it is not due (router/summaries.py's schedule)."""
        assert self.site is not None
        pool = self.local_agents()
        slots: Any = pool.live if isinstance(pool, LivePool) else []
        brain = self.service.brain
        runs = {agent_id: brain.policy.count(agent_id) for agent_id in brain.reliability}
        entries = summary_entries(self.service.registry.index, slots, brain.reliability, runs)
        if not self.schedule.due(entries, now):
            return None
        seq = self.schedule.published(entries, now)
        return SiteSummary(
            site=self.site,
            router_id=self.service.router_id,
            epoch=self.service.epoch,
            seq=seq,
            entries=entries,
            sent_at=time.time(),
        )

    async def _publish_forever(self) -> None:
        assert self.site is not None and self.service.client is not None
        topic = self.service.topics.site_summary(self.site)
        while True:
            summary = self.summary(time.monotonic())
            if summary is not None and self.service.client.is_connected:
                self.service.client.publish(topic, summary, retain=True)
                self.published += 1
            await asyncio.sleep(min(1.0, self.schedule.min_gap_s))

    def final_messages(self) -> list[tuple[str, bytes, bool]]:
        """What a router that stops publishes last: its site's summary cleared (nothing to route to there)."""
        if self.site is None or not self.published:
            return []
        return [(self.service.topics.site_summary(self.site), b"", True)]

    def _on_summary_cleared(self, topic: str) -> None:
        """The site's router stopped: nothing to route to there."""
        self.directory.forget(self.service.topics.last_level(topic.removesuffix("/summary")))

    def _on_summary(self, topic: str, summary: SiteSummary) -> None:
        if topic == self.service.topics.site_summary(summary.site) and summary.site != self.site:
            self.directory.apply(summary, time.monotonic())

    def site_agents(self, requirement: str = "", tags: Sequence[str] = (), limit: int = 6) -> list[AgentView]:
        """The best other sites for a requirement, one agent each (with no requirement: every fresh site)."""
        now, reliability = time.monotonic(), self.service.brain.reliability
        if not requirement:
            return self.directory.views(now, reliability, exclude=self.site)
        return self.directory.best(now, reliability, requirement, tags, limit, exclude=self.site)

    # --- the site agent -------------------------------------------------------------------------------------

    def _on_run(self, topic: str, message: RunRequest | RunCancel) -> None:
        if isinstance(message, RunCancel):
            self.agent.cancel(message.dispatch_id)
            return
        if message.agent_id != site_agent_id(self.site or ""):
            return
        if self.service.topics.router_reply_owner(message.reply_topic) is None:
            log.warning("dropped a site run: reply topic %r is not a router's inbox", message.reply_topic[:200])
            return
        self.agent.start(message, lambda result: self._reply(message, result))

    def _reply(self, request: RunRequest, result: RunResult) -> None:
        assert self.service.client is not None
        self.service.client.publish(request.reply_topic, result)


def task_brain(service: RouterService, request: TaskRequest) -> RoutingBrain:
    """The brain a task routes with: locality-aware when the task or the router has a site, else the plain one."""
    site = request.site or service.config.connection.site
    role: SiteRole | None = getattr(service, "sites", None)
    if site is None and (role is None or not len(role.directory)):
        return service.brain

    def emit(data: dict[str, Any]) -> None:
        service.emit(request.task_id, "placed", data)

    if role is None:
        return SiteScopedBrain(service.brain, site, service.config.locality, emit)
    return SiteScopedBrain(service.brain, site, service.config.locality, emit, role.site_agents)
