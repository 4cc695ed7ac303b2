"""The seed's beacon round, as an option (`selection: bid`): ask agents to bid, collect until enough or late.

Bids are collected until every live agent has answered or the deadline passes; there is never a fixed sleep.
The bids' dynamic state (load, latency, availability) replaces the registry's for that task.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any

from router.screening import AgentView
from shared.messages import Bid, BidRequest, TaskRequest
from shared.topics import Topics

BID_DEADLINE_S = 0.5


class BidCollector:
    """Routes incoming bids to the round that asked for them."""

    def __init__(self) -> None:
        self._rounds: dict[str, asyncio.Queue[Bid]] = {}

    def offer(self, bid: Bid) -> None:
        queue = self._rounds.get(bid.request_id)
        if queue is not None:
            queue.put_nowait(bid)

    async def collect(
        self, client: Any, topics: Topics, router_id: str, task: TaskRequest, known: list[AgentView]
    ) -> list[AgentView]:
        """Run one bid round for `task` and return the bidders as agent views."""
        request_id = uuid.uuid4().hex[:16]
        queue: asyncio.Queue[Bid] = asyncio.Queue()
        self._rounds[request_id] = queue
        request = BidRequest(
            request_id=request_id,
            task_id=task.task_id,
            requirement=task.query[:20_000],
            required_tags=task.requirements,
            reply_topic=topics.router_bids(router_id),
            deadline_s=BID_DEADLINE_S,
        )
        try:
            client.publish(topics.bid_request(), request)
            bids = await _gather_bids(queue, expected=len(known), deadline_s=BID_DEADLINE_S)
        finally:
            self._rounds.pop(request_id, None)
        return _views_from_bids(bids, known)


async def _gather_bids(queue: asyncio.Queue[Bid], expected: int, deadline_s: float) -> list[Bid]:
    bids: dict[str, Bid] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while len(bids) < max(expected, 1):
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            bid = await asyncio.wait_for(queue.get(), remaining)
        except asyncio.TimeoutError:
            break
        bids[bid.agent_id] = bid
    return list(bids.values())


def _views_from_bids(bids: list[Bid], known: list[AgentView]) -> list[AgentView]:
    by_id = {view.agent_id: view for view in known}
    views = []
    for bid in bids:
        base = by_id.get(bid.agent_id)
        if base is None:
            continue  # a bidder the registry has never seen (no beacon) is not trusted
        views.append(replace(base, load=bid.load, latency_ms=bid.latency_ms, available=bid.available))
    return views
