"""One fleet benchmark: start the processes, run the phases, write records, summary, figures and report.

Phases, in order, on one broker, one router process and one process per scripted agent:

    alone    every stream item to every agent directly: each agent's accuracy, the best agent, the oracle
    single   the stream through the router, cot_count 1 (it learns from the gold answers as it goes)
    vote3    the same stream, cot_count 3 (three agents, weighted vote)
    sc       the self-consistency baseline: the same stream, the best agent by configured skill sampled
             cot_count 3 times (direct runs) and voted by the router, on a router process of its own (fresh
             state, so its learning touches no other phase)
    cost     the same stream, cot_count 1, through a second, fresh router with `policy: cost_aware`
    exp2     a second stream through the first router (restarted: it resumes its saved state), or the
             cost_aware one (`exp2_router`), cot_count 1; at `kill_at` the best agent alone (or `kill`) is
             SIGKILLed (or degraded: `shock`)
"""

from __future__ import annotations

import asyncio
import json
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.data.fetch import DEFAULT_CACHE
from bench.data.items import BenchItem
from bench.fleet import metrics
from bench.fleet.driver import Record, run_alone, run_routed, wait_for_fabric
from bench.fleet.processes import FleetProcesses
from bench.fleet.profiles import (
    DEFAULT_FLEET,
    ScriptedProfile,
    best_by_skill,
    expected_accuracy,
    node_config,
    write_node_config,
)
from bench.fleet.stream import build_stream, load_items
from bench.runner.fabric import TEACHER
from shared.config import ConnectionSettings

ROUTER_ID = "fleet-router"
COST_ROUTER_ID = "fleet-router-cost"
BASELINE_ROUTER_ID = "fleet-router-sc"
VOTE_COUNT = 3  # cot_count of the fleet's vote and of the self-consistency baseline: the same runs per task
KEEPALIVE_S = 2


@dataclass(frozen=True)
class FleetConfig:
    """What one fleet benchmark runs."""

    out: Path
    items: int = 60
    exp2_items: int = 60
    kill_at: float = 0.5
    seed: int = 7
    benchmarks: tuple[str, ...] = ("gsm8k", "medqa", "bbh")
    cache_dir: Path = DEFAULT_CACHE
    item_files: dict[str, str] = field(default_factory=dict)
    profiles: tuple[ScriptedProfile, ...] = DEFAULT_FLEET
    top_l: int = 3
    fabric: str = "fleet"
    kill: str = "best"  # the agent Exp2 shocks: "best" (the best agent alone) or an agent id
    shock: str = "kill"  # "kill": SIGKILL its process; "degrade": its skill falls to 30 % (it keeps answering)
    exp2_router: str = "linucb"  # the router Exp2 runs on: the LinUCB one, or the cost_aware one

    def __post_init__(self) -> None:
        if self.items < 1 or self.exp2_items < 2:
            raise ValueError("need at least 1 item and 2 Exp2 items")
        if not 0.0 < self.kill_at < 1.0:
            raise ValueError(f"kill_at is a fraction of the Exp2 stream in (0, 1), got {self.kill_at}")
        if len({p.agent_id for p in self.profiles}) != len(self.profiles) or len(self.profiles) < 2:
            raise ValueError("the fleet needs at least two agents with distinct ids")
        if self.exp2_router not in ("linucb", "cost_aware"):
            raise ValueError(f"exp2_router is 'linucb' or 'cost_aware', got {self.exp2_router!r}")
        if self.shock not in ("kill", "degrade"):
            raise ValueError(f"shock is 'kill' or 'degrade', got {self.shock!r}")
        if self.kill != "best" and self.kill not in {p.agent_id for p in self.profiles}:
            raise ValueError(f"--kill names no agent of the fleet: {self.kill!r}")


def run(config: FleetConfig) -> dict[str, Any]:
    """Run the fleet benchmark (blocking); returns the summary (also written to summary.json)."""
    return asyncio.run(run_async(config))


async def run_async(config: FleetConfig) -> dict[str, Any]:
    started = time.monotonic()
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    items = load_items(config.benchmarks, config.cache_dir.expanduser(), config.item_files)
    stream = build_stream(items, config.items, config.seed)
    exp2_stream = build_stream(items, config.exp2_items, config.seed + 1)
    processes = FleetProcesses(out, config.fabric)
    shutil.rmtree(out / "shocks", ignore_errors=True)
    (out / "shocks").mkdir()
    try:
        processes.start_broker()
        for position, profile in enumerate(config.profiles):
            settings = node_config(
                profile,
                config.seed * 100 + position,
                config.benchmarks,
                config.cache_dir,
                config.item_files,
                KEEPALIVE_S,
                degrade_file=_degrade_file(out, profile.agent_id),
            )
            processes.start_agent(
                profile.agent_id, write_node_config(out / "nodes" / f"{profile.agent_id}.yaml", settings)
            )
        router_file = out / "nodes" / "router.yaml"
        teachers = [TEACHER]  # the driver's tasks carry gold answers: the routers learn from them
        router_file.write_text(
            yaml.safe_dump({"connection": {"keepalive_s": KEEPALIVE_S}, "router": {"teachers": teachers}})
        )
        cost_router_file = out / "nodes" / "router-cost.yaml"
        cost_router_file.write_text(
            yaml.safe_dump(
                {"connection": {"keepalive_s": KEEPALIVE_S}, "router": {"policy": "cost_aware", "teachers": teachers}}
            )
        )
        state_file, cost_state_file = out / "router_state.json", out / "router_cost_state.json"
        state_file.unlink(missing_ok=True)
        cost_state_file.unlink(missing_ok=True)
        processes.start_router(ROUTER_ID, router_file, state_file, config.seed)
        connection = ConnectionSettings(fabric=config.fabric, brokers=(processes.broker_url,), keepalive_s=KEEPALIVE_S)
        agent_ids = [profile.agent_id for profile in config.profiles]

        async def ready(router_id: str) -> None:
            try:
                await wait_for_fabric(connection, agent_ids, router_id)
            except TimeoutError as error:
                logs = {name: processes.log_tail(name, 600) for name in processes.processes}
                raise RuntimeError(f"{error}; logs: {json.dumps(logs)[:3000]}") from None
            await asyncio.sleep(1.0)  # the router's registry hears the beacons a moment after the watcher

        await ready(ROUTER_ID)
        alone = await run_alone(connection, stream, agent_ids)
        killed = metrics.best_agent(alone) if config.kill == "best" else config.kill
        single = await run_routed(connection, stream, "single", 1, top_l=config.top_l)
        vote3 = await run_routed(connection, stream, "vote3", VOTE_COUNT, top_l=config.top_l)
        processes.stop_one(ROUTER_ID)
        baseline_state = out / "router_sc_state.json"
        baseline_state.unlink(missing_ok=True)
        processes.start_router(BASELINE_ROUTER_ID, router_file, baseline_state, config.seed)
        await ready(BASELINE_ROUTER_ID)
        sampled = best_by_skill(config.profiles, stream)
        sc = await run_routed(connection, stream, "sc", VOTE_COUNT, top_l=config.top_l, agent_id=sampled)
        processes.stop_one(BASELINE_ROUTER_ID)
        processes.start_router(COST_ROUTER_ID, cost_router_file, cost_state_file, config.seed)
        await ready(COST_ROUTER_ID)
        cost = await run_routed(connection, stream, "cost", 1, top_l=config.top_l)
        if config.exp2_router == "linucb":
            processes.stop_one(COST_ROUTER_ID)
            processes.start_router(ROUTER_ID, router_file, state_file, config.seed)
            await ready(ROUTER_ID)
        kill_index = int(config.exp2_items * config.kill_at)

        def maybe_kill(index: int) -> None:
            if index == kill_index and config.shock == "kill":
                processes.kill(killed)
            elif index == kill_index:
                _degrade_file(out, killed).touch()

        exp2 = await run_routed(connection, exp2_stream, "exp2", 1, top_l=config.top_l, before_task=maybe_kill)
    finally:
        processes.stop()
    records = {"alone": alone, "single": single, "vote3": vote3, "sc": sc, "cost": cost, "exp2": exp2}
    for name, rows in records.items():
        with open(out / f"records_{name}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
    summary = summarize(config, records, killed, kill_index, stream)
    summary["run"] = {
        "elapsed_s": round(time.monotonic() - started, 1),
        "broker": processes.broker_kind,
        "keepalive_s": KEEPALIVE_S,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "config": {**asdict(config), "out": str(config.out), "cache_dir": str(config.cache_dir), "profiles": None},
        "profiles": [asdict(profile) for profile in config.profiles],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def summarize(
    config: FleetConfig, records: dict[str, list[Record]], killed: str, kill_index: int, stream: list[BenchItem]
) -> dict[str, Any]:
    """Every figure the report shows, from the records (and the stream, for the agents' configured skill)."""
    alone, single, vote3, sc, cost, exp2 = (
        records[name] for name in ("alone", "single", "vote3", "sc", "cost", "exp2")
    )
    prices = {profile.agent_id: profile.cost_per_1k_tokens for profile in config.profiles}
    tokens = metrics.token_table(alone)
    best = metrics.best_agent(alone)
    sampled = best_by_skill(config.profiles, stream)  # the agent the baseline phase sampled
    benchmarks = sorted({record["benchmark"] for record in alone})
    best_per_benchmark = {benchmark: metrics.best_agent(alone, benchmark) for benchmark in benchmarks}
    strategies = {
        "router, single choice (cot_count 1)": (
            metrics.accuracy(single),
            *metrics.cost_per_correct(single, prices, tokens),
        ),
        "router, 3-way vote (cot_count 3)": (metrics.accuracy(vote3), *metrics.cost_per_correct(vote3, prices, tokens)),
        f"self-consistency: {sampled} x3, voted": (metrics.accuracy(sc), *metrics.cost_per_correct(sc, prices, tokens)),
        "router cost_aware, single choice": (metrics.accuracy(cost), *metrics.cost_per_correct(cost, prices, tokens)),
        f"best agent alone ({best})": (
            metrics.per_agent_accuracy(alone)[best],
            *metrics.alone_cost(alone, best, prices, tokens),
        ),
        "oracle (some agent is right)": (metrics.oracle_accuracy(alone), *metrics.oracle_cost(alone, prices, tokens)),
    }
    pre, post = exp2[:kill_index], exp2[kill_index:]
    pre_accuracy = metrics.accuracy(pre)
    return {
        "items": len(single),
        "benchmarks": benchmarks,
        "strategies": {
            name: {"accuracy": acc, "total_cost": cost, "cost_per_correct": per}
            for name, (acc, cost, per) in strategies.items()
        },
        "agents_alone": {
            agent: {
                "accuracy": value,
                "per_benchmark": {b: metrics.per_agent_accuracy(alone, b)[agent] for b in benchmarks},
                "cost_per_1k_tokens": prices[agent],
            }
            for agent, value in metrics.per_agent_accuracy(alone).items()
        },
        "best_per_benchmark": best_per_benchmark,
        "self_consistency": {
            "agent": sampled,
            "chosen_by": "configured skill: the highest expected accuracy on this stream",
            "expected_accuracy": {
                profile.agent_id: round(expected_accuracy(profile, stream), 4) for profile in config.profiles
            },
            "best_measured_alone": best,
            "runs_per_task": {"vote3": metrics.runs_per_task(vote3), "self_consistency": metrics.runs_per_task(sc)},
            "tokens_per_task": {
                "vote3": metrics.tokens_per_task(vote3, tokens),
                "self_consistency": metrics.tokens_per_task(sc, tokens),
            },
            **metrics.against_baseline(vote3, sc),
        },
        "share_to_best": metrics.share_to_best(single, best_per_benchmark),
        "share_to_best_final": {
            benchmark: _share([r for r in single if r["benchmark"] == benchmark], agent, last_half=True)
            for benchmark, agent in best_per_benchmark.items()
        },
        "task_share": metrics.task_share(single),
        "per_benchmark": {
            benchmark: {
                "single": metrics.accuracy([r for r in single if r["benchmark"] == benchmark]),
                "vote3": metrics.accuracy([r for r in vote3 if r["benchmark"] == benchmark]),
                "self_consistency": metrics.accuracy([r for r in sc if r["benchmark"] == benchmark]),
                "cost": metrics.accuracy([r for r in cost if r["benchmark"] == benchmark]),
                "best_alone": metrics.per_agent_accuracy(alone, benchmark)[best_per_benchmark[benchmark]],
            }
            for benchmark in benchmarks
        },
        "exp2": {
            "killed": killed,
            "shock": config.shock,
            "router": config.exp2_router,
            "kill_at": kill_index,
            "accuracy_before": pre_accuracy,
            "accuracy_after": metrics.accuracy(post),
            "tasks_to_reroute": metrics.tasks_to_reroute(exp2, killed, kill_index),
            "tasks_to_recover": metrics.tasks_to_recover(exp2, kill_index, 0.9 * pre_accuracy),
            "failed_tasks_after": sum(1 for r in post if r["error"]),
            "elapsed_ms_before": _median([r["elapsed_ms"] for r in pre]),
            "elapsed_ms_after": _median([r["elapsed_ms"] for r in post]),
            "rolling_accuracy": metrics.rolling([1.0 if r["correct"] else 0.0 for r in exp2], 10).tolist(),
            "elapsed_ms": [r["elapsed_ms"] for r in exp2],
        },
    }


def _degrade_file(out: Path, agent_id: str) -> Path:
    """The file whose existence degrades a scripted agent (Exp2 with shock "degrade" creates it)."""
    return out / "shocks" / f"degrade-{agent_id}"


def _share(records: list[Record], agent: str, last_half: bool) -> float:
    chosen = [r for r in records[len(records) // 2 if last_half else 0 :] if r["agents"]]
    return sum(r["agents"][0] == agent for r in chosen) / len(chosen) if chosen else float("nan")


def _median(values: list[float]) -> float:
    return float(sorted(values)[len(values) // 2]) if values else float("nan")
