"""The hand-off across a WAN link: a site's router takes runs for its site agent and places them on its boards.

    router elsewhere ── RunRequest(agent "site:B", reply: its inbox) ──► site B's router (`SiteAgent.serve`)
        screen B's own agents (Top-L, LinUCB) ─► RunRequest to a board (new dispatch id, reply: B's inbox)
        ─► the board's RunResult (a failed run moves to the next candidate, once)
    router elsewhere ◄── RunResult (the original dispatch id and agent "site:B", the board's text and usage) ──┘

The router elsewhere learns how well site B serves (one arm per site, from its own tasks' rewards); site B's
router learns which of its boards serve well from its own tasks, and places relayed runs by what it learned
(a relayed run's correctness is known only where its task is voted, so it teaches nothing here). A RunCancel
for the site agent's run cancels the board's run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from router.brain import RoutingBrain
from router.capabilities import infer_requirements
from router.locality import fitting_first
from router.screening import AgentView
from shared.messages import ErrorKind, RunRequest, RunResult

RELAY_ATTEMPTS = 2
TOP_L = 3


class SiteAgent:
    """Serves `site:{site}`: runs asked of the site run on one of its live agents."""

    def __init__(
        self,
        brain: RoutingBrain,
        local_agents: Callable[[], Sequence[AgentView]],
        run: Callable[[RunRequest, float], Awaitable[RunResult]],
        inbox: str,
    ) -> None:
        self.brain = brain
        self.local_agents = local_agents
        self.run = run
        self.inbox = inbox
        self.relayed = 0
        self._serving: dict[str, asyncio.Task[Any]] = {}

    async def serve(self, request: RunRequest) -> RunResult:
        """Run `request` on a board of this site; the result names the request's dispatch id and agent."""
        tags = infer_requirements(request.subtask)
        choices = fitting_first(self.brain.choose(self.local_agents(), request.subtask, tags, TOP_L))
        result = _failed(request, "backend_error", "no live agent at this site")
        for attempt, choice in enumerate(choices[:RELAY_ATTEMPTS]):
            inner = request.model_copy(
                update={
                    "dispatch_id": f"{request.dispatch_id[:100]}.relay{attempt}",
                    "agent_id": choice.agent_id,
                    "reply_topic": self.inbox,
                }
            )
            self.relayed += 1
            result = await self.run(inner, request.deadline_s)
            if result.ok:
                break
        return result.model_copy(update={"dispatch_id": request.dispatch_id, "agent_id": request.agent_id})

    def start(self, request: RunRequest, reply: Callable[[RunResult], None]) -> None:
        """Serve a run in the background and reply with its result (a re-asked dispatch id is served once)."""
        if request.dispatch_id in self._serving:
            return

        async def relay() -> None:
            try:
                reply(await self.serve(request))
            finally:
                self._serving.pop(request.dispatch_id, None)

        self._serving[request.dispatch_id] = asyncio.create_task(relay(), name="router.site-agent.run")

    def cancel(self, dispatch_id: str) -> None:
        task = self._serving.pop(dispatch_id, None)
        if task is not None:
            task.cancel()  # the board's run is cancelled by the router's own run() on cancellation


def _failed(request: RunRequest, kind: ErrorKind, message: str) -> RunResult:
    return RunResult(
        dispatch_id=request.dispatch_id,
        task_id=request.task_id,
        agent_id=request.agent_id,
        node_id="unknown",
        error=kind,
        error_message=message,
    )
