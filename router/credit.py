"""What one task teaches the router: a reward per run, joined to its dispatch, and the priors' outcome counts.

    a voted step      each run: agreement with the vote (or, on the last step with a teacher's gold answer,
                      correctness) ─► reward ─► LinUCB + reliability, and a success or a miss in the priors
    a failed run      reward 0, a miss
    planner runs      a readable plan, plus the agreement bonus when its plan (or its chain's answer) won
    chains            every step of the winning chain earns the bonus

Only a teacher's labels (gold answer, benchmark, difficulty, requirements) key what the router learns; anyone
else's task teaches from the vote alone, under labels the router derives (router.tenancy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from router.answers import canonicalize
from router.brain import RoutingBrain
from router.capabilities import infer_requirements
from router.outcomes import ChainOutcome, PlannerRun, RunRecord, SubtaskOutcome
from router.planning import PLANNING_TAGS
from router.rewards import RewardInputs, reward
from shared.messages import TaskEventName, TaskOptions


class Emit(Protocol):
    def __call__(self, event: TaskEventName, **data: Any) -> None: ...


class TaskCredit:
    """Rewards the runs of one task and counts their outcomes, through the router's `RoutingBrain`."""

    def __init__(
        self, brain: RoutingBrain, options: TaskOptions, requirements: Sequence[str], teaches: bool, emit: Emit
    ) -> None:
        self.brain = brain
        self.options = options
        self.requirements = tuple(requirements)
        self.teaches = teaches
        self.emit = emit

    def capability(self, step: str) -> str | None:
        """The capability a step's outcomes count towards in the priors: its first required tag (the task's own
        requirements only from a teacher; else the tags the router infers from the step)."""
        tags = self.requirements if self.teaches and self.requirements else tuple(infer_requirements(step))
        return tags[0] if tags else None

    def gold(self) -> str | None:
        """The gold answer rewards are checked against: a teacher's only."""
        return self.options.gold_answer if self.teaches else None

    def step(self, outcome: SubtaskOutcome, is_final: bool) -> None:
        """Reward the runs of a voted step: correctness on the last step when a gold answer is known, else agreement."""
        gold = self.gold()
        capability = self.capability(outcome.text)
        rewards = {}
        for record in outcome.records:
            correct = record.answer.canonical == canonicalize(gold) if gold is not None and is_final else None
            value = self.run(record, capability, record.answer.canonical == outcome.winner, correct)
            rewards[record.choice.agent_id] = round(value, 3)
        self.emit("rewarded", subtask=outcome.index, rewards=rewards)

    def planners(
        self,
        planners: list[PlannerRun],
        won: Callable[[PlannerRun], bool],
        correct: Callable[[PlannerRun], bool | None] = lambda run: None,
    ) -> None:
        """Reward each planner run: success and a parsable plan, plus the bonus when its plan (or chain) won."""
        rewards = {}
        for planner in planners:
            if planner.record.result.error is not None:
                value = self.failure(planner.record, PLANNING_TAGS[0])
            else:
                readable = planner.candidate is not None
                value = self.run(planner.record, PLANNING_TAGS[0], won(planner), correct(planner), readable)
            rewards[planner.record.choice.agent_id] = round(value, 3)
        self.emit("rewarded", subtask=-1, rewards=rewards)

    def chains(self, planners: list[PlannerRun], chains: list[ChainOutcome], winner: str | None) -> None:
        """Every step of a chain, and its planner, earn the winner bonus when the chain's answer won the vote.

        With a gold answer, the chain's correctness replaces agreement (as for a plain subtask). A planner whose
        plan could not be read has no chain and earns no bonus.
        """
        gold_answer = self.gold()
        gold = None if gold_answer is None else canonicalize(gold_answer)
        won: dict[int, bool] = {}
        correct: dict[int, bool | None] = {}
        for chain in chains:
            won[id(chain.planner)] = chain.complete and winner is not None and chain.answer == winner
            correct[id(chain.planner)] = None if gold is None else chain.complete and chain.answer == gold
            rewards = {}
            for outcome in chain.outcomes:
                capability = self.capability(outcome.text)
                for record in outcome.records:
                    value = self.run(record, capability, won[id(chain.planner)], correct[id(chain.planner)])
                    rewards[record.choice.agent_id] = round(value, 3)
            planner = chain.planner.record.choice.agent_id
            self.emit("rewarded", chain=chain.number, planner=planner, rewards=rewards)
        self.planners(
            planners,
            lambda run: won.get(id(run), False),
            lambda run: correct.get(id(run), None if gold is None else False),
        )

    def run(
        self,
        record: RunRecord,
        capability: str | None,
        agreed: bool,
        correct: bool | None,
        well_formed: bool | None = None,
    ) -> float:
        """Reward one answered run (LinUCB, vote weight) and count its outcome into the priors."""
        inputs = RewardInputs(
            succeeded=True,
            well_formed=record.answer.method not in ("text", "none") if well_formed is None else well_formed,
            agreed_with_vote=agreed,
            correct=correct,
            latency_ms=record.result.latency_ms,
            cost=record.result.prompt_tokens + record.result.completion_tokens,
        )
        value = reward(inputs)
        self.brain.learn(record.dispatch_id, value)
        self._observe(record, capability, agreed if correct is None else correct)
        return value

    def failure(self, record: RunRecord, capability: str | None) -> float:
        """A run that produced nothing earns 0 and counts as a miss."""
        self.brain.learn(record.dispatch_id, 0.0)
        self._observe(record, capability, False)
        return 0.0

    def _observe(self, record: RunRecord, capability: str | None, success: bool) -> None:
        options = self.options
        benchmark, difficulty = (options.benchmark, options.difficulty) if self.teaches else (None, None)
        self.brain.observe(record.choice.agent_id, benchmark, difficulty, capability, success)
