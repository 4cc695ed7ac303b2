"""A router's site role reads summaries as hostile input: a summary counts only on its own site's topic."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from support import deliver

from router.brain import RoutingBrain
from router.site_role import SiteRole
from shared.config import ConnectionSettings
from shared.messages import CapabilitySummary, SiteSummary, encode
from shared.topics import Topics

TOPICS = Topics("lab")


def role(site: str | None = "a") -> SiteRole:
    async def run(request: Any, timeout_s: float) -> Any:
        raise AssertionError("no run expected")

    service = SimpleNamespace(
        config=SimpleNamespace(connection=ConnectionSettings(fabric="lab", site=site)),
        topics=TOPICS,
        brain=RoutingBrain(),
        run=run,
        reply_topic=TOPICS.router_inbox("ra"),
        router_id="ra",
    )
    return SiteRole(service, interval_s=5.0)


def subscriptions(site_role: SiteRole) -> dict[str, Any]:
    return dict(site_role.subscriptions())


def summary(site: str) -> bytes:
    line = CapabilitySummary(capabilities=("writing",), model="m", agents_live=2, slots=2, free_slots=2)
    return encode(SiteSummary(site=site, router_id=f"r{site}", epoch=1, seq=1, entries=(line,)))


def test_a_summary_counts_only_on_its_own_sites_topic() -> None:
    site_role = role()
    deliver(subscriptions(site_role), TOPICS.site_summary("c"), summary("b"))  # b's summary on c's topic: impersonation
    deliver(subscriptions(site_role), TOPICS.site_summary("b"), b"not json")
    assert not site_role.directory.summaries
    deliver(subscriptions(site_role), TOPICS.site_summary("b"), summary("b"))
    deliver(subscriptions(site_role), TOPICS.site_summary("a"), summary("a"))  # our own site: we know it in detail
    assert set(site_role.directory.summaries) == {"b"}
    assert [view.agent_id for view in site_role.site_agents()] == ["site:b"]


def test_a_cleared_summary_or_an_offline_router_removes_its_site() -> None:
    site_role = role()
    deliver(subscriptions(site_role), TOPICS.site_summary("b"), summary("b"))
    deliver(subscriptions(site_role), TOPICS.site_summary("b"), b"")
    assert not site_role.directory.summaries
    deliver(subscriptions(site_role), TOPICS.site_summary("b"), summary("b"))
    site_role.directory.forget_router("rb")
    assert not site_role.directory.summaries


def test_a_router_without_a_site_publishes_nothing_and_clears_nothing() -> None:
    assert role(site=None).final_messages() == [] and role(site=None).start() is None
