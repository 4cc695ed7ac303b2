"""Rendezvous hashing: every task has exactly one owner, and losing a router moves only its tasks."""

from __future__ import annotations

import itertools
from collections import Counter

from router.ownership import rendezvous_owner

ROUTERS = ["router-a", "router-b", "router-c", "router-d"]
TASKS = [f"task-{index:04d}" for index in range(2000)]


def test_no_router_no_owner() -> None:
    assert rendezvous_owner("task-1", []) is None


def test_single_router_owns_everything() -> None:
    assert {rendezvous_owner(task, ["only"]) for task in TASKS} == {"only"}


def test_owner_is_deterministic_and_independent_of_roster_order() -> None:
    expected = [rendezvous_owner(task, ROUTERS) for task in TASKS]
    for permutation in itertools.islice(itertools.permutations(ROUTERS), 6):
        assert [rendezvous_owner(task, permutation) for task in TASKS] == expected
    assert [rendezvous_owner(task, iter(ROUTERS)) for task in TASKS] == expected  # any iterable


def test_each_task_has_exactly_one_owner_among_the_routers() -> None:
    """Each router decides alone, from its own (differently ordered) roster: exactly one claims each task."""
    rosters = {router: ROUTERS[index:] + ROUTERS[:index] for index, router in enumerate(ROUTERS)}
    for task in TASKS:
        claims = [router for router, roster in rosters.items() if rendezvous_owner(task, roster) == router]
        assert len(claims) == 1


def test_tasks_spread_over_all_routers() -> None:
    counts = Counter(rendezvous_owner(task, ROUTERS) for task in TASKS)
    assert set(counts) == set(ROUTERS)
    assert min(counts.values()) > len(TASKS) / len(ROUTERS) / 2  # no router starved


def test_removing_a_router_moves_only_its_tasks() -> None:
    before = {task: rendezvous_owner(task, ROUTERS) for task in TASKS}
    remaining = [router for router in ROUTERS if router != "router-b"]
    after = {task: rendezvous_owner(task, remaining) for task in TASKS}
    moved = {task for task in TASKS if before[task] != after[task]}
    assert moved == {task for task in TASKS if before[task] == "router-b"}
    assert moved  # router-b owned something
    assert {after[task] for task in moved} <= set(remaining)


def test_adding_a_router_takes_tasks_only_for_itself() -> None:
    before = {task: rendezvous_owner(task, ROUTERS) for task in TASKS}
    after = {task: rendezvous_owner(task, [*ROUTERS, "router-e"]) for task in TASKS}
    assert {after[task] for task in TASKS if before[task] != after[task]} == {"router-e"}
