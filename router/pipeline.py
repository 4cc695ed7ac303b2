"""One task through the Symphony pipeline: plan, route, run CoT in parallel, vote, learn, answer.

    TaskRequest
      └─ plan: k planners in parallel ─► parse/repair ─► plan vote (mean Top-L score of the steps)
      └─ for each subtask: Top-L screening ─► LinUCB order ─► cot_count runs in parallel on distinct agents
             a failed/timed-out run is re-dispatched to the next candidate; voting stops early once the
             runs still out cannot change the winner
      └─ rewards joined by dispatch id ─► LinUCB + reliability updates
      └─ TaskAnswer (and trace events all along)

The pipeline talks to the fabric only through `RunPort` (send a RunRequest, await its result; emit a trace
event), so it runs unchanged over MQTT or over an in-memory fake.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from router.answers import ExtractedAnswer, canonicalize, extract_answer
from router.brain import Choice, RoutingBrain
from router.capabilities import infer_requirements
from router.planning import SYSTEM_PROMPT as PLANNER_PROMPT
from router.planning import PlanParseError, fallback_plan, is_simple_query, parse_plan
from router.registry import DEFAULT_RELIABILITY
from router.rewards import RewardInputs, reward
from router.screening import AgentView
from router.voting import Ballot, PlanCandidate, can_stop_early, tally, vote_plans
from shared.messages import (
    BallotSummary,
    RunRequest,
    RunResult,
    SamplingOptions,
    SubtaskSummary,
    TaskAnswer,
    TaskRequest,
)

PLANNING_TAGS = ("planning",)
MAX_CONTEXT_CHARS = 2000
PLAN_MAX_TOKENS = 256


class RunPort(Protocol):
    """What the pipeline needs from the fabric."""

    reply_topic: str

    async def run(self, request: RunRequest, timeout_s: float) -> RunResult:
        """Send `request` to its agent and return the result (an error RunResult on timeout or death)."""
        ...

    def emit(self, task_id: str, event: str, data: dict[str, Any]) -> None:
        """Publish one trace event of a task."""
        ...


class NoAgentsError(Exception):
    """No live agent can take the task."""


@dataclass
class RunRecord:
    """One finished run of a subtask, as voting and learning see it."""

    choice: Choice
    dispatch_id: str
    result: RunResult
    answer: ExtractedAnswer
    order: int


@dataclass
class SubtaskOutcome:
    index: int
    text: str
    winner: str
    winner_raw: str
    winner_text: str
    records: list[RunRecord] = field(default_factory=list)


@dataclass
class SpareAgents:
    """Where a failed run of one subtask goes next: an unused Top-L candidate, else a fresh screening.

    The fresh screening sees the registry as it is now (a dead agent has left it), so a run is re-dispatched even
    when cot_count = top_l left no unused candidate. An agent runs a subtask at most once.
    """

    backups: list[Choice]
    tried: set[str]
    rescreen: Callable[[int], list[Choice]]

    def next(self) -> Choice | None:
        if self.backups:
            choice = self.backups.pop(0)
        else:
            fresh = [c for c in self.rescreen(len(self.tried) + 1) if c.agent_id not in self.tried]
            if not fresh:
                return None
            choice = fresh[0]
        self.tried.add(choice.agent_id)
        return choice


class TaskPipeline:
    """Drives one TaskRequest to a TaskAnswer."""

    def __init__(
        self,
        request: TaskRequest,
        brain: RoutingBrain,
        live_agents: Callable[[], list[AgentView]],
        port: RunPort,
        router_id: str,
        clock: Callable[[], float],
    ) -> None:
        self.request = request
        self.options = request.options
        self.brain = brain
        self.live_agents = live_agents
        self.port = port
        self.router_id = router_id
        self.clock = clock
        self.started = clock()
        self._order = 0

    async def execute(self) -> TaskAnswer:
        self._emit("received", query=self.request.query[:500], options=self.options.model_dump())
        plan = await self._plan()
        outcomes: list[SubtaskOutcome] = []
        for index, step in enumerate(plan):
            is_final = index == len(plan) - 1
            outcomes.append(await self._solve(index, step, self._context(outcomes), is_final))
        final = outcomes[-1]
        answer = TaskAnswer(
            task_id=self.request.task_id,
            router_id=self.router_id,
            answer=final.winner_raw,
            final_text=final.winner_text,
            plan=tuple(plan),
            subtasks=tuple(self._summary(outcome) for outcome in outcomes),
            elapsed_ms=(self.clock() - self.started) * 1000,
        )
        self._emit("answered", answer=answer.answer, elapsed_ms=round(answer.elapsed_ms, 1))
        return answer

    # --- planning -------------------------------------------------------------------------------------

    async def _plan(self) -> list[str]:
        query = self.request.query
        if self.options.plan_k <= 1 or is_simple_query(query):
            plan = fallback_plan(query)
            self._emit("planned", plan=plan, planners=[], skipped=True)
            return plan
        choices = self._choose(PLANNING_TAGS, "plan and decompose the task into subtasks", self.options.plan_k)
        planners = _distinct(choices, self.options.plan_k)
        replies = await asyncio.gather(*(self._plan_with(choice) for choice in planners))
        candidates = [candidate for candidate in replies if candidate is not None]
        if not candidates:
            plan = fallback_plan(query)
            self._emit("planned", plan=plan, planners=[c.agent_id for c in planners], fallback=True)
            return plan
        winner = candidates[vote_plans(candidates, self.brain.reliability or None)]
        self._emit(
            "planned",
            plan=list(winner.steps),
            chosen=winner.planner_id,
            candidates=[{"planner": c.planner_id, "steps": list(c.steps)} for c in candidates],
        )
        return list(winner.steps)

    async def _plan_with(self, choice: Choice) -> PlanCandidate | None:
        request = self._run_request(choice, f"{self.request.query}\nReturn the JSON now.", (), "plan")
        record = await self._run(choice, request, subtask_index=-1)
        self.brain.forget(record.dispatch_id)  # plans are not rewarded: the seed rewards answers
        if record.result.error is not None:
            return None
        try:
            steps = parse_plan(record.result.text)
        except PlanParseError:
            return None
        scores = tuple(self._step_score(step) for step in steps)
        return PlanCandidate(choice.agent_id, tuple(steps), scores)

    def _step_score(self, step: str) -> float:
        """Mean Top-L screening score of a step (the seed's plan weight)."""
        choices = self.brain.choose(self.live_agents(), step, infer_requirements(step), self.options.top_l)
        return sum(c.screening.score for c in choices) / len(choices) if choices else 0.0

    # --- execution and voting -------------------------------------------------------------------------

    async def _solve(self, index: int, step: str, context: tuple[str, ...], is_final: bool) -> SubtaskOutcome:
        tags = tuple(self.request.requirements) or tuple(infer_requirements(step))
        count = self.options.cot_count
        choices = self._choose(tags, step, max(self.options.top_l, count))
        first = _distinct(choices, count)
        first_ids = {choice.agent_id for choice in first}
        spares = SpareAgents(
            backups=[choice for choice in choices if choice.agent_id not in first_ids],
            tried=set(first_ids),
            rescreen=lambda size: self._screen(tags, step, size),
        )
        self._emit(
            "screened",
            subtask=index,
            text=step[:300],
            tags=list(tags),
            candidates=[
                {"agent": c.agent_id, "score": round(c.screening.score, 3), "ucb": round(c.ucb, 3)} for c in choices
            ],
        )
        records = await self._run_votes(index, step, context, first, spares)
        outcome = self._vote(index, step, records)
        self._learn(outcome, is_final)
        return outcome

    async def _run_votes(
        self, index: int, step: str, context: tuple[str, ...], first: list[Choice], spares: SpareAgents
    ) -> list[RunRecord]:
        pending = {
            asyncio.ensure_future(self._run_with_fallback(index, step, context, choice, spares)): choice
            for choice in first
        }
        records: list[RunRecord] = []
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                pending.pop(finished)
                record = finished.result()
                if record is not None:
                    records.append(record)
            if pending and self._decided(records, list(pending.values())):
                for task in pending:
                    task.cancel()
                self._emit("voted", subtask=index, early_stop=True, outstanding=len(pending))
                break
        return records

    def _decided(self, records: list[RunRecord], outstanding: list[Choice]) -> bool:
        ballots = self._ballots(records)
        weights = [self.brain.weight(choice.agent_id) for choice in outstanding]
        return can_stop_early(ballots, weights, self.brain.reliability, default_weight=DEFAULT_RELIABILITY)

    async def _run_with_fallback(
        self, index: int, step: str, context: tuple[str, ...], choice: Choice, spares: SpareAgents
    ) -> RunRecord | None:
        """Run on `choice`; on failure move to a spare agent (shared by the subtask's runs)."""
        current: Choice | None = choice
        while current is not None:
            request = self._run_request(current, step, context, "solve")
            record = await self._run(current, request, index)
            if record.result.error is None:
                return record
            self.brain.learn(record.dispatch_id, 0.0)
            current = spares.next()
            self._emit(
                "redispatched",
                subtask=index,
                failed_agent=record.choice.agent_id,
                error=record.result.error,
                message=record.result.error_message[:200],
                next_agent=current.agent_id if current else None,
            )
        return None

    async def _run(self, choice: Choice, request: RunRequest, subtask_index: int) -> RunRecord:
        self.brain.record_dispatch(request.dispatch_id, choice)
        self._emit("dispatched", subtask=subtask_index, agent=choice.agent_id, dispatch_id=request.dispatch_id)
        try:
            result = await self.port.run(request, self._run_timeout())
        except asyncio.CancelledError:
            self.brain.forget(request.dispatch_id)  # cut short by an early-stopped vote: no reward
            raise
        self._order += 1
        answer = extract_answer(result.text) if result.error is None else ExtractedAnswer("", "", "none")
        self._emit(
            "result",
            subtask=subtask_index,
            agent=choice.agent_id,
            dispatch_id=request.dispatch_id,
            error=result.error,
            answer=answer.raw[:200],
            latency_ms=round(result.latency_ms, 1),
            tokens=result.completion_tokens,
        )
        return RunRecord(choice, request.dispatch_id, result, answer, self._order)

    def _vote(self, index: int, step: str, records: list[RunRecord]) -> SubtaskOutcome:
        if not records:
            raise NoAgentsError(f"every agent failed on subtask {index + 1}: {step[:100]!r}")
        outcome = tally(self._ballots(records), self.brain.reliability, default_weight=DEFAULT_RELIABILITY)
        winner_record = next(r for r in records if r.answer.canonical == outcome.winner)
        self._emit("voted", subtask=index, winner=outcome.winner_raw[:200], weights=_rounded(outcome.weights))
        return SubtaskOutcome(
            index, step, outcome.winner, outcome.winner_raw, winner_record.result.text, records=records
        )

    def _ballots(self, records: Sequence[RunRecord]) -> list[Ballot]:
        return [
            Ballot(r.choice.agent_id, r.answer.canonical, r.answer.raw, r.answer.confidence, r.order) for r in records
        ]

    def _learn(self, outcome: SubtaskOutcome, is_final: bool) -> None:
        gold = self.options.gold_answer
        rewards = {}
        for record in outcome.records:
            correct = None
            if gold is not None and is_final:
                correct = record.answer.canonical == canonicalize(gold)
            inputs = RewardInputs(
                succeeded=True,
                well_formed=record.answer.method not in ("text", "none"),
                agreed_with_vote=record.answer.canonical == outcome.winner,
                correct=correct,
                latency_ms=record.result.latency_ms,
                cost=record.result.prompt_tokens + record.result.completion_tokens,
            )
            value = reward(inputs)
            self.brain.learn(record.dispatch_id, value)
            rewards[record.choice.agent_id] = round(value, 3)
        self._emit("rewarded", subtask=outcome.index, rewards=rewards)

    # --- helpers --------------------------------------------------------------------------------------

    def _choose(self, tags: Sequence[str], requirement: str, count: int) -> list[Choice]:
        choices = self._screen(tags, requirement, max(count, self.options.top_l))
        if not choices:
            raise NoAgentsError("no live agent is available on the fabric")
        return choices

    def _screen(self, tags: Sequence[str], requirement: str, size: int) -> list[Choice]:
        """Top-`size` live agents for a requirement, in LinUCB's order (empty when none is live)."""
        agents = self.live_agents()
        return self.brain.choose(agents, requirement, tags, size, self.options.difficulty, self.options.benchmark)

    def _run_request(self, choice: Choice, text: str, context: tuple[str, ...], purpose: str) -> RunRequest:
        return RunRequest(
            dispatch_id=f"{self.request.task_id[:64]}.{uuid.uuid4().hex[:12]}",
            task_id=self.request.task_id,
            agent_id=choice.agent_id,
            purpose=purpose,  # type: ignore[arg-type]
            subtask=text,
            context=context,
            instructions=PLANNER_PROMPT.format(max_steps=8) if purpose == "plan" else None,
            sampling=self._sampling(purpose),
            deadline_s=self._run_timeout(),
            reply_topic=self.port.reply_topic,
            sent_at=self.clock(),
        )

    def _sampling(self, purpose: str) -> SamplingOptions:
        if purpose == "plan":  # plans must be strict JSON: less randomness, room for the whole object
            return SamplingOptions(
                max_tokens=max(self.options.max_tokens, PLAN_MAX_TOKENS), temperature=min(self.options.temperature, 0.3)
            )
        return SamplingOptions(max_tokens=self.options.max_tokens, temperature=self.options.temperature)

    def _run_timeout(self) -> float:
        remaining = self.options.deadline_s - (self.clock() - self.started)
        configured = self.options.run_timeout_s or self.options.deadline_s / 2
        return max(0.5, min(configured, remaining))

    def _context(self, outcomes: list[SubtaskOutcome]) -> tuple[str, ...]:
        return tuple(f"Step {o.index + 1} ({o.text[:120]}): {o.winner_raw}"[:MAX_CONTEXT_CHARS] for o in outcomes)

    def _summary(self, outcome: SubtaskOutcome) -> SubtaskSummary:
        ballots = tuple(
            BallotSummary(
                agent_id=r.choice.agent_id,
                answer=r.answer.raw[:500],
                weight=round(self.brain.weight(r.choice.agent_id), 4),
                latency_ms=round(r.result.latency_ms, 1),
            )
            for r in outcome.records
        )
        return SubtaskSummary(index=outcome.index, text=outcome.text, answer=outcome.winner_raw, ballots=ballots)

    def _emit(self, event: str, **data: Any) -> None:
        self.port.emit(self.request.task_id, event, data)


def _distinct(choices: list[Choice], count: int) -> list[Choice]:
    """The first `count` choices; when fewer agents exist, agents are reused in order."""
    if not choices:
        return []
    return [choices[i % len(choices)] for i in range(count)]


def _rounded(weights: dict[str, float]) -> dict[str, float]:
    return {answer[:100]: round(weight, 4) for answer, weight in weights.items()}
