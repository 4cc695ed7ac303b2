"""One task through the Symphony pipeline: plan, route, run CoT in parallel, vote, learn, answer.

    TaskRequest
      └─ plan (plan_k > 1, unless the task is simple): k planners in parallel ─► parse/repair
           plan_mode decompose: plan vote (mean Top-L score of the steps) ─► the winning plan's steps, below
           plan_mode chains:    every planner's chain runs (one agent per step) ─► the chains' final answers
                                are voted, weighted by the mean Top-L score of their agents (the seed's mode)
      └─ for each step: Top-L screening (learned priors) ─► LinUCB order ─► cot_count runs in parallel on
             distinct agents; each run sees the original query and the earlier steps' answers, and the last
             step is told to answer the task in its format. A failed/timed-out run is re-dispatched to the next
             candidate; voting stops early once the runs still out cannot change the winner
      └─ rewards joined by dispatch id ─► LinUCB + reliability + prior updates (planners are rewarded too: a
             plan that won the plan vote, or a chain whose answer won, earns the agreement bonus, and so do
             the steps of the winning chain)
      └─ TaskAnswer (and trace events all along: every step when the task asked for a full trace, else the last)

The pipeline talks to the fabric only through `RunPort` (send a RunRequest, await its result; emit a trace
event; send a line of the client's stream), so it runs unchanged over MQTT or over an in-memory fake. It decides
what its client sees: which trace events (the task's trace level), and the stream of a task that asked for one
(the tokens of a single run that answers the task, marked on its RunRequest; else one progress line per step).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from router.answers import ExtractedAnswer
from router.brain import Choice, RoutingBrain
from router.capabilities import infer_requirements
from router.constrained import (
    MAX_PLAN_STEPS,
    MIN_PLAN_STEPS,
    can_honour,
    constrained_answer,
    honouring,
    plan_constraint,
    plan_token_bound,
    required_kinds,
    step_constraints,
    unsupported_reason,
)
from router.constrained import PLANNER_PROMPT as CONSTRAINED_PLANNER_PROMPT
from router.credit import TaskCredit
from router.outcomes import ChainOutcome, PlannerRun, RunRecord, SubtaskOutcome, winning_record
from router.planning import MAX_STEPS, PLANNING_TAGS, PlanParseError, fallback_plan, is_simple_query, parse_plan
from router.planning import SYSTEM_PROMPT as PLANNER_PROMPT
from router.registry import DEFAULT_RELIABILITY
from router.routed_task import traced
from router.screening import AgentView
from router.topic import off_topic_reason, plan_is_on_topic
from router.voting import (
    Ballot,
    ChainBallot,
    PlanCandidate,
    can_stop_early,
    plan_key,
    tally,
    vote_chains,
    vote_plans,
)
from shared.errors import SymphonyError
from shared.messages import (
    BallotSummary,
    ChunkPhase,
    OutputConstraint,
    Purpose,
    RunRequest,
    RunResult,
    SamplingOptions,
    SubtaskSummary,
    TaskAnswer,
    TaskEventName,
    TaskRequest,
)

MAX_CONTEXT_CHARS = 2000
PLAN_MAX_TOKENS = 256
FINAL_STEP_NOTE = "This is the last step: give the answer to the original task, in the format it asks for."
_CHAIN: ContextVar[int | None] = ContextVar("symphony_chain", default=None)
"""The chain a coroutine works on (chains mode), added to its trace events."""
UNREACHED_NODE = "unknown"
"""The node id of a result the router wrote itself because the agent's own never came (no result in time, its node
went offline or restarted): the agent was out of reach, not wrong, and is asked again once it re-announces itself."""
RETURN_POLL_S = 0.1


class RunPort(Protocol):
    """What the pipeline needs from the fabric."""

    reply_topic: str

    async def run(self, request: RunRequest, timeout_s: float) -> RunResult:
        """Send `request` to its agent and return the result (an error RunResult on timeout or death)."""
        ...

    def emit(self, task_id: str, event: TaskEventName, data: dict[str, Any]) -> None:
        """Publish one trace event of a task."""
        ...

    def stream(self, task_id: str, phase: ChunkPhase, text: str) -> None:
        """Send one chunk of the task's stream to its client (a task that asked for a stream)."""
        ...


class NoAgentsError(SymphonyError):
    """No live agent can take the task."""


@dataclass
class SpareAgents:
    """Where a failed run of one subtask goes next: an unused Top-L candidate, else a fresh screening.

    The fresh screening sees the registry as it is now (a dead agent has left it), so a run is re-dispatched even
    when cot_count = top_l left no unused candidate. An agent runs a subtask at most once.
    """

    backups: list[Choice]
    tried: set[str]
    rescreen: Callable[[int], list[Choice]]
    lost: dict[str, float] = field(default_factory=dict)  # agent id -> when the run it never answered was sent

    def back(self, announced_since: Callable[[str, float], bool]) -> Choice | None:
        """The next agent once the candidates ran out: a new one, or a lost one that re-announced itself since."""
        for agent_id, sent_at in list(self.lost.items()):
            if announced_since(agent_id, sent_at):
                del self.lost[agent_id]
                self.tried.discard(agent_id)
        return self.next()

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
        live_agents: Callable[[], Sequence[AgentView]],
        port: RunPort,
        router_id: str,
        clock: Callable[[], float],
        wait_for_agents: Callable[[], Awaitable[bool]] | None = None,
        announced_since: Callable[[str, float], bool] | None = None,
        *,
        teaches: bool = True,
        max_steps: int = MAX_STEPS,
    ) -> None:
        self.request = request
        # Only a teacher's labels (gold answer, benchmark, difficulty, requirements) key what the router learns;
        # anyone else's task teaches from the vote alone, under labels the router derives (router.tenancy).
        self.credit = TaskCredit(brain, request.options, request.requirements, teaches, self._emit)
        self.max_steps = max_steps
        self.options = request.options
        self.brain = brain
        self.live_agents = live_agents
        self.port = port
        self.router_id = router_id
        self.clock = clock
        # Waits (bounded) until an agent is live again; True when one is. The fleet can be empty for a moment
        # (a broker restart: every node's Will read before the nodes re-announce): waiting beats `no_agents`.
        self.wait_for_agents = wait_for_agents
        # Whether an agent (re)announced itself after a time of `clock`. Given, a subtask whose agents were all
        # out of reach (a broker restarting) waits until its deadline for one to come back instead of failing.
        self.announced_since = announced_since
        self.started = clock()
        # A voted task's stream is its progress; a single run's tokens are streamed by its agent instead.
        self._streams_progress = self.options.stream and self.options.cot_count > 1 and self.options.agent_id is None
        self._order = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    async def execute(self) -> TaskAnswer:
        if traced(self.options, "received"):  # (the options' dump is built only for a full trace)
            self._emit("received", query=self.request.query[:500], options=self.options.model_dump())
        skipped = self._planning_skipped()
        if skipped is not None:
            plan = fallback_plan(self.request.query)
            self._emit("planned", plan=plan, planners=[], skipped=True, reason=skipped)
            return await self._execute_plan(plan)
        planners = await self._ask_planners()
        candidates = [run.candidate for run in planners if run.candidate is not None]
        if not candidates:
            self.credit.planners(planners, lambda run: False)
            plan = fallback_plan(self.request.query)
            self._emit(
                "planned",
                plan=plan,
                planners=[r.record.choice.agent_id for r in planners],
                fallback=True,
                rejected=[run.summary() for run in planners],
                constrained=[r.record.choice.agent_id for r in planners if r.constrained],
            )
            return await self._execute_plan(plan)
        if self.options.plan_mode == "chains":
            return await self._execute_chains(planners)
        winner = candidates[vote_plans(candidates, self.brain.reliability or None)]
        self._emit(
            "planned",
            plan=list(winner.steps),
            chosen=winner.planner_id,
            candidates=[{"planner": c.planner_id, "steps": list(c.steps)} for c in candidates],
            constrained=[r.record.choice.agent_id for r in planners if r.constrained],
        )
        winning_key = plan_key(winner.steps)
        self.credit.planners(
            planners, lambda run: run.candidate is not None and plan_key(run.candidate.steps) == winning_key
        )
        return await self._execute_plan(list(winner.steps))

    async def _execute_plan(self, plan: list[str]) -> TaskAnswer:
        """Run the steps in order, each voted over cot_count runs, and answer with the last step's winner."""
        outcomes: list[SubtaskOutcome] = []
        for index, step in enumerate(plan):
            is_final = index == len(plan) - 1
            outcome = await self._solve(index, step, self._context(step, outcomes), is_final, self.options.cot_count)
            self.credit.step(outcome, is_final)
            outcomes.append(outcome)
        return self._answer(plan, outcomes)

    def _answer(self, plan: Sequence[str], outcomes: list[SubtaskOutcome]) -> TaskAnswer:
        final = outcomes[-1]
        winner = winning_record(final).result
        answer = TaskAnswer(
            task_id=self.request.task_id,
            router_id=self.router_id,
            answer=final.winner_raw,
            final_text=final.winner_text,
            plan=tuple(plan),
            subtasks=tuple(self._summary(outcome) for outcome in outcomes),
            elapsed_ms=(self.clock() - self.started) * 1000,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            finish_reason="length" if winner.completion_tokens >= self.options.max_tokens else "stop",
        )
        self._emit("answered", answer=answer.answer, elapsed_ms=round(answer.elapsed_ms, 1))
        return answer

    # --- planning -------------------------------------------------------------------------------------

    def _planning_skipped(self) -> str | None:
        """Why this task is not planned (None: it is). `simple` skips planning, `hard` always plans (plan_k > 1)."""
        if self.options.agent_id is not None:
            return "direct run"
        if self.options.plan_k <= 1:
            return "plan_k 1"
        if self.options.difficulty == "simple":
            return "simple task"
        if self.options.difficulty != "hard" and is_simple_query(self.request.query):
            return "simple query"
        return None

    async def _ask_planners(self) -> list[PlannerRun]:
        choices = await self._choose(PLANNING_TAGS, "plan and decompose the task into subtasks", self.options.plan_k)
        planners = _distinct(choices, self.options.plan_k)
        return list(await asyncio.gather(*(self._plan_with(choice) for choice in planners)))

    async def _plan_with(self, choice: Choice) -> PlannerRun:
        if self._agent_honours(choice.agent_id, ("json_schema",)):  # a plan by construction, no example to copy
            most = self._plan_schema_steps()
            constraint = plan_constraint(most, min(MIN_PLAN_STEPS, most))
            request = self._run_request(choice, self.request.query, (), "plan", constraint=constraint)
            budget = max(request.sampling.max_tokens, plan_token_bound(most))  # it always closes
            room = request.sampling.model_copy(update={"max_tokens": budget})
            request = request.model_copy(update={"sampling": room})
        else:
            request = self._run_request(choice, f"{self.request.query}\nReturn the JSON now.", (), "plan")
        record = await self._run(choice, request, subtask_index=-1)
        constrained = request.constraint is not None
        if record.result.error is not None:
            return PlannerRun(record, None, constrained, rejected=f"the run failed: {record.result.error}")
        try:
            steps = parse_plan(record.result.text, self.max_steps)  # strict JSON when constrained; repairs else
        except PlanParseError:
            return PlannerRun(record, None, constrained, rejected="no step could be read from its reply")
        if constrained and not plan_is_on_topic(steps, self.request.query):  # valid JSON, about something else
            reason = off_topic_reason(steps, self.request.query)
            return PlannerRun(record, None, constrained, tuple(steps), rejected=reason)
        scores = tuple(self._step_score(step) for step in steps)
        return PlannerRun(record, PlanCandidate(choice.agent_id, tuple(steps), scores), constrained, tuple(steps))

    def _step_score(self, step: str) -> float:
        """Mean Top-L screening score of a step (the seed's plan weight)."""
        choices = self._screen(infer_requirements(step), step, self.options.top_l)
        return sum(c.screening.score for c in choices) / len(choices) if choices else 0.0

    # --- chains (plan_mode "chains", the seed's planner mode) -------------------------------------------

    async def _execute_chains(self, planners: list[PlannerRun]) -> TaskAnswer:
        """Run every parsed chain, vote on their final answers with chain weights, reward, answer the winner."""
        runs = [run for run in planners if run.candidate is not None]
        self._emit(
            "planned",
            plan=[],
            chains=[
                {"planner": r.record.choice.agent_id, "steps": list(r.candidate.steps)} for r in runs if r.candidate
            ],
        )
        chains = list(await asyncio.gather(*(self._run_chain(number, run) for number, run in enumerate(runs, 1))))
        complete = [chain for chain in chains if chain.complete]
        if not complete:
            self.credit.chains(planners, chains, None)
            raise NoAgentsError("every chain failed: no agent answered one of its steps")
        chosen, vote = vote_chains(
            [ChainBallot(c.name, c.answer, c.outcomes[-1].winner_raw, c.weight) for c in complete]
        )
        winner = complete[chosen]
        self._emit(
            "voted",
            subtask=-1,
            winner=vote.winner_raw[:200],
            chosen=winner.planner.record.choice.agent_id,
            weights={c.name: round(c.weight, 4) for c in complete},
        )
        self.credit.chains(planners, chains, vote.winner)
        return self._answer(winner.steps, winner.outcomes)

    async def _run_chain(self, number: int, planner: PlannerRun) -> ChainOutcome:
        """Run one chain's steps in order, one agent per step, not reusing an agent while others are left."""
        assert planner.candidate is not None
        _CHAIN.set(number)  # this task's own context: its trace events carry the chain's number
        steps = planner.candidate.steps
        outcomes: list[SubtaskOutcome] = []
        used: set[str] = set()
        for position, step in enumerate(steps):
            is_final = position == len(steps) - 1
            try:
                outcome = await self._solve(position, step, self._context(step, outcomes), is_final, 1, used)
            except NoAgentsError:  # every agent failed on this step (the redispatched events say which)
                return ChainOutcome(number, planner, steps, outcomes, complete=False)
            used.update(record.choice.agent_id for record in outcome.records)
            outcomes.append(outcome)
        return ChainOutcome(number, planner, steps, outcomes, complete=True)

    # --- execution and voting -------------------------------------------------------------------------

    async def _solve(
        self,
        index: int,
        step: str,
        context: tuple[str, ...],
        is_final: bool,
        count: int,
        avoid: set[str] | None = None,
    ) -> SubtaskOutcome:
        """Run one step on `count` distinct agents (agents in `avoid` last) and vote; learning is the caller's."""
        tags = tuple(self.request.requirements) or tuple(infer_requirements(step))
        constraints = step_constraints(self.options, is_final)
        needs = required_kinds(*constraints)
        choices = await self._choose(tags, step, max(self.options.top_l, count), needs)
        preferred = [c for c in choices if c.agent_id not in (avoid or ())] + [
            c for c in choices if c.agent_id in (avoid or ())
        ]
        first = _distinct(preferred, count)
        first_ids = {choice.agent_id for choice in first}
        spares = SpareAgents(
            backups=[choice for choice in preferred if choice.agent_id not in first_ids],
            tried=set(first_ids),
            rescreen=lambda size: self._screen(tags, step, size, needs),
        )
        if traced(self.options, "screened"):  # (the candidates' list is built only for a full trace)
            self._emit(
                "screened",
                subtask=index,
                text=step[:300],
                tags=list(tags),
                candidates=[
                    {
                        "agent": c.agent_id,
                        "score": round(c.screening.score, 3),
                        "prior": round(c.screening.prior, 3),
                        "ucb": round(c.ucb, 3),
                    }
                    for c in choices
                ],
            )
        # A single run that gives the task's answer streams its tokens to a client that asked for a stream.
        stream = self.options.stream and count == 1 and is_final and _CHAIN.get() is None
        records = await self._run_votes(
            index, self._run_text(step, is_final), context, first, spares, stream, constraints
        )
        return self._vote(index, step, records)

    async def _run_votes(
        self,
        index: int,
        step: str,
        context: tuple[str, ...],
        first: list[Choice],
        spares: SpareAgents,
        stream: bool = False,
        constraints: tuple[OutputConstraint | None, OutputConstraint | None] = (None, None),
    ) -> list[RunRecord]:
        pending = {
            asyncio.ensure_future(
                self._run_with_fallback(index, step, context, choice, spares, stream, constraints)
            ): choice
            for choice in first
        }
        records: list[RunRecord] = []
        while pending:
            try:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # the task's deadline passed or its client went away: stop the runs
                for task in pending:
                    task.cancel()
                raise
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
        self,
        index: int,
        step: str,
        context: tuple[str, ...],
        choice: Choice,
        spares: SpareAgents,
        stream: bool = False,
        constraints: tuple[OutputConstraint | None, OutputConstraint | None] = (None, None),
    ) -> RunRecord | None:
        """Run on `choice`; on failure move to a spare agent (shared by the subtask's runs)."""
        current: Choice | None = choice
        output, answer = constraints
        while current is not None:
            request = self._run_request(current, step, context, "solve", stream, output, answer)
            sent_at = self.clock()
            record = await self._run(current, request, index)
            if record.result.error is None:
                return record
            self.credit.failure(record, self.credit.capability(step))
            if record.result.node_id == UNREACHED_NODE:
                spares.lost[record.choice.agent_id] = sent_at
            current = spares.next()
            if current is None and await self._fleet_back():  # every agent had gone: a spare among those back
                current = spares.next()
            if current is None and spares.lost:
                current = await self._agent_back(spares)
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
        constrained = {
            name: value.type
            for name, value in (("constraint", request.constraint), ("answer_constraint", request.answer_constraint))
            if value is not None
        }
        self._emit(
            "dispatched", subtask=subtask_index, agent=choice.agent_id, dispatch_id=request.dispatch_id, **constrained
        )
        try:
            result = await self.port.run(request, self._run_timeout())
        except asyncio.CancelledError:
            self.brain.forget(request.dispatch_id)  # cut short by an early-stopped vote: no reward
            raise
        self._order += 1
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        answer = constrained_answer(request, result) if result.error is None else ExtractedAnswer("", "", "none")
        self._emit(
            "result",
            subtask=subtask_index,
            agent=choice.agent_id,
            dispatch_id=request.dispatch_id,
            error=result.error,
            answer=answer.raw[:200],
            method=answer.method,
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

    # --- helpers --------------------------------------------------------------------------------------

    def _run_text(self, step: str, is_final: bool) -> str:
        """What the agents are asked: the step, and on the last step of a plan, to answer in the task's format."""
        if is_final and step != self.request.query:
            return f"{step}\n{FINAL_STEP_NOTE}"
        return step

    async def _choose(
        self, tags: Sequence[str], requirement: str, count: int, needs: tuple[str, ...] = ()
    ) -> list[Choice]:
        choices = self._screen(tags, requirement, max(count, self.options.top_l), needs)
        if not choices and await self._fleet_back():
            choices = self._screen(tags, requirement, max(count, self.options.top_l), needs)
        if not choices and needs and self.live_agents():
            raise NoAgentsError(unsupported_reason(needs, len(self.live_agents())))
        if not choices:
            raise NoAgentsError("no live agent is available on the fabric")
        return choices

    async def _agent_back(self, spares: SpareAgents) -> Choice | None:
        """Wait, until the task's deadline, for a new agent or for one of the subtask's lost agents to come back.

        Every candidate was tried and some never answered (the router wrote their failure): a broker that
        restarts (or stops routing while it shuts down) looks like that. Failing at once would answer
        `no_agents` although the agents re-announce a moment later; waiting costs nothing but the deadline.
        """
        if self.announced_since is None:
            return None
        while self.clock() - self.started < self.options.deadline_s:
            choice = spares.back(self.announced_since)
            if choice is not None:
                return choice
            await asyncio.sleep(RETURN_POLL_S)
        return None

    async def _fleet_back(self) -> bool:
        """When no agent at all is live: wait for one to (re)announce; True once one is (never when some are)."""
        if self.wait_for_agents is None or self.live_agents():
            return False
        return await self.wait_for_agents()

    def _screen(self, tags: Sequence[str], requirement: str, size: int, needs: tuple[str, ...] = ()) -> list[Choice]:
        """Top-`size` live agents for a requirement, in LinUCB's order (empty when none is live); with `needs`,
        only agents that honour those constraint kinds."""
        agents = self.live_agents()
        if self.options.agent_id is not None:  # a direct run: that agent or none
            agents = [agent for agent in agents if agent.agent_id == self.options.agent_id]
        if needs:
            agents = honouring(agents, needs)
        options = self.options
        return self.brain.choose(
            agents, requirement, tags, size, options.difficulty, options.benchmark, options.budget, options.max_tokens
        )

    def _agent_honours(self, agent_id: str, kinds: tuple[str, ...]) -> bool:
        """Whether a live agent announces these constraint kinds (looked up for that agent alone when it can be)."""
        agents = self.live_agents()
        views_of = getattr(agents, "views_of", None)
        found = views_of([agent_id]).values() if views_of is not None else agents
        return any(view.agent_id == agent_id and can_honour(view, kinds) for view in found)

    def _run_request(
        self,
        choice: Choice,
        text: str,
        context: tuple[str, ...],
        purpose: Purpose,
        stream: bool = False,
        constraint: OutputConstraint | None = None,
        answer_constraint: OutputConstraint | None = None,
    ) -> RunRequest:
        constrained_plan = purpose == "plan" and constraint is not None
        return RunRequest(
            dispatch_id=f"{self.request.task_id[:64]}.{uuid.uuid4().hex[:12]}",
            task_id=self.request.task_id,
            agent_id=choice.agent_id,
            purpose=purpose,
            subtask=text,
            context=context,
            instructions=self._planner_prompt(constrained_plan) if purpose == "plan" else None,
            sampling=self._sampling(purpose),
            deadline_s=self._run_timeout(),
            reply_topic=self.port.reply_topic,
            stream=stream,
            sent_at=self.clock(),
            constraint=constraint,
            answer_constraint=answer_constraint,
        )

    def _plan_schema_steps(self) -> int:
        """The most steps a constrained plan may have: the plan schema's, or the account's limit when lower."""
        return min(self.max_steps, MAX_PLAN_STEPS)

    def _planner_prompt(self, constrained: bool) -> str:
        if constrained:
            return CONSTRAINED_PLANNER_PROMPT.format(max_steps=self._plan_schema_steps())
        return PLANNER_PROMPT.format(max_steps=self.max_steps)

    def _sampling(self, purpose: str) -> SamplingOptions:
        if purpose == "plan":  # plans must be strict JSON: less randomness, room for the whole object
            return SamplingOptions(
                max_tokens=max(self.options.max_tokens, PLAN_MAX_TOKENS), temperature=min(self.options.temperature, 0.3)
            )
        return SamplingOptions(max_tokens=self.options.max_tokens, temperature=self.options.temperature)

    def _run_timeout(self) -> float:
        remaining = self.options.deadline_s - (self.clock() - self.started)
        if self.options.agent_id is not None:  # a direct run has no other agent to move to: the task's deadline ends it
            return max(0.5, remaining + 1.0)
        configured = self.options.run_timeout_s or self.options.deadline_s / 2
        return max(0.5, min(configured, remaining))

    def _context(self, step: str, outcomes: list[SubtaskOutcome]) -> tuple[str, ...]:
        """The original task (unless the step is the task itself), then the earlier steps' answers."""
        task = () if step == self.request.query else (f"Original task: {self.request.query}",)
        earlier = tuple(f"Step {o.index + 1} ({o.text[:120]}): {o.winner_raw}"[:MAX_CONTEXT_CHARS] for o in outcomes)
        return tuple(self.request.context) + task + earlier

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

    def _emit(self, event: TaskEventName, **data: Any) -> None:
        """A step of the task: a trace event if its trace level wants it, a progress line if it streams progress."""
        if self._streams_progress and event in PROGRESS_EVENTS:
            self.port.stream(self.request.task_id, "progress", progress_text(event, data))
        if not traced(self.options, event):
            return  # nobody follows this task step by step: no event built, encoded or sent
        chain = _CHAIN.get()
        if chain is not None and "chain" not in data:
            data["chain"] = chain
        self.port.emit(self.request.task_id, event, data)


def _distinct(choices: list[Choice], count: int) -> list[Choice]:
    """The first `count` choices; when fewer agents exist, agents are reused in order."""
    if not choices:
        return []
    return [choices[i % len(choices)] for i in range(count)]


def _rounded(weights: dict[str, float]) -> dict[str, float]:
    return {answer[:100]: round(weight, 4) for answer, weight in weights.items()}


PROGRESS_EVENTS: frozenset[TaskEventName] = frozenset({"planned", "dispatched", "result", "voted"})


def progress_text(event: TaskEventName, data: dict[str, Any]) -> str:
    """One line of progress for a streamed task that is voted (its runs' tokens are not streamed)."""
    if event == "dispatched":
        return f"dispatched to {data.get('agent')}"
    if event == "result":
        if data.get("error"):
            return f"{data.get('agent')} failed ({data.get('error')})"
        return f"{data.get('agent')} answered {str(data.get('answer', ''))[:80]!r}"
    if event == "voted":
        return f"voted: {str(data.get('winner', ''))[:80]!r}" if "winner" in data else "vote decided early"
    return f"plan of {len(data.get('plan') or [])} step(s)"
