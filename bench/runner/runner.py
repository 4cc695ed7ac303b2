"""The benchmark runner: every item of every phase through the fabric, once per variant, resumable.

    cold-start  a fresh selector (the state file is removed when a run starts anew) that learns from gold
    pretrain    the same selector goes on learning from gold
    test        a new router loads the state file frozen; gold answers are withheld from the fabric

Each phase gets its own RouterService on the same state file (a learning router saves it when it stops),
so "frozen in test" is the router's own frozen mode, not a convention of the runner.
"""

from __future__ import annotations

import asyncio
import json
import platform
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data.items import BenchItem
from bench.runner.config import PHASES, Phase, RunConfig, variant_name
from bench.runner.fabric import Fabric, open_fabric, run_router, teacher
from bench.runner.outputs import write_outputs
from bench.runner.progress import ProgressLog, append_jsonl
from bench.runner.prompts import REQUIREMENTS, gold_for_router, prompt_for
from bench.runner.scoring import Score, score
from bench.runner.selection import select
from bench.runner.tracing import TraceCollector
from shared.messages import TaskAnswer

DIFFICULTY_OPTION = {"easy": "simple", "hard": "hard"}
# RouterService.start returns before the broker acknowledged its task/submit subscription, so a task sent
# at once can be lost; the client resends unanswered tasks (idempotent by task id) after this many seconds.
RESEND_EVERY_S = 2.0
ItemCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RunOutcome:
    out: Path
    files: list[Path]
    completed: int
    stopped_by_budget: bool
    elapsed_s: float


def results_path(out: Path, phase: str) -> Path:
    return out / f"results_{phase}.jsonl"


def run(config: RunConfig, on_item: ItemCallback | None = None) -> RunOutcome:
    """Run the benchmark (blocking) and write every output; see the module docstring."""
    return asyncio.run(run_async(config, on_item))


async def run_async(config: RunConfig, on_item: ItemCallback | None = None) -> RunOutcome:
    started = time.monotonic()
    config.out.mkdir(parents=True, exist_ok=True)
    phases = select(config)
    progress = ProgressLog(config.out / "progress.jsonl")
    state_file = config.out / "linucb_state.json"
    if not progress.started and state_file.exists():
        state_file.unlink()  # a new run starts cold; a resumed one keeps what it learned
    deadline = None if config.time_budget_s is None else started + config.time_budget_s
    completed, stopped = 0, False
    async with open_fabric(config) as fabric:
        _write_run_info(config, fabric, phases)
        for phase in PHASES:
            todo = [item for item in phases[phase] if not _item_done(progress, phase, item, config)]
            if not todo or stopped:
                continue
            count, stopped = await _run_phase(config, fabric, phase, todo, progress, state_file, deadline, on_item)
            completed += count
    elapsed = time.monotonic() - started
    files = write_outputs(config.out, elapsed)
    return RunOutcome(config.out, files, completed, stopped, elapsed)


def _item_done(progress: ProgressLog, phase: str, item: BenchItem, config: RunConfig) -> bool:
    return all(progress.is_done(phase, variant, item.item_id) for variant in config.variants)


async def _run_phase(
    config: RunConfig,
    fabric: Fabric,
    phase: Phase,
    items: list[BenchItem],
    progress: ProgressLog,
    state_file: Path,
    deadline: float | None,
    on_item: ItemCallback | None,
) -> tuple[int, bool]:
    """Run `items` of one phase; returns (runs completed, whether the time budget stopped it)."""
    from shared.client import FabricTaskClient

    completed = 0
    frozen = phase == "test"
    router_id = f"bench-router-{phase}-{uuid.uuid4().hex[:6]}"
    async with (
        run_router(fabric, state_file, frozen, router_id, config.seed),
        FabricTaskClient(fabric.connection, client_id=teacher(fabric.connection)) as client,
    ):
        for item in items:
            if deadline is not None and time.monotonic() >= deadline:
                return completed, True
            for cot_count in config.cot_counts:
                variant = variant_name(cot_count)
                if progress.is_done(phase, variant, item.item_id):
                    continue
                record, trace = await run_item(client, item, phase, cot_count, config)
                append_jsonl(results_path(config.out, phase), record)
                append_jsonl(config.out / "linucb_trace.jsonl", {**_key(record), **trace})
                progress.mark(phase, variant, item.item_id)
                completed += 1
                if on_item is not None:
                    on_item(record)
    return completed, False


async def run_item(
    client: Any, item: BenchItem, phase: Phase, cot_count: int, config: RunConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Submit one item under one variant; returns its result record and its LinUCB trace record."""
    from shared.client import TaskFailed, TaskTimeout

    collector = TraceCollector()
    answer: TaskAnswer | None = None
    error = None
    started = time.monotonic()
    try:
        answer = await client.submit(
            prompt_for(item),
            task_id=_task_id(phase, cot_count, item),
            requirements=REQUIREMENTS.get(item.benchmark, ()),
            plan_k=config.plan_k,
            cot_count=cot_count,
            top_l=config.top_l,
            max_tokens=config.max_tokens,
            temperature=config.temperature,
            deadline_s=config.deadline_s,
            benchmark=item.benchmark,
            difficulty=DIFFICULTY_OPTION.get(item.difficulty or ""),
            gold_answer=None if phase == "test" else gold_for_router(item),
            on_event=collector.add,
            resend_every_s=RESEND_EVERY_S,
        )
    except (TaskFailed, TaskTimeout) as failure:  # one failed task is a wrong answer, not the end of the run
        error = str(failure)
    latency = time.monotonic() - started
    scored = Score(False, "", error or "")
    if answer is not None:
        scored = await asyncio.to_thread(score, item, answer.answer, answer.final_text, config.exec_timeout_s)
    trace = collector.record(answer)
    record = {
        "phase": phase,
        "variant": variant_name(cot_count),
        "cot_count": cot_count,
        "item_id": item.item_id,
        "benchmark": item.benchmark,
        "difficulty": item.difficulty,
        "difficulty_score": item.difficulty_score,
        "gold": item.gold,
        "answer": answer.answer if answer else "",
        "predicted": scored.predicted,
        "correct": scored.correct,
        "detail": scored.detail,
        "agents": trace["chosen"],
        "latency_s": round(latency, 3),
        "error": error,
    }
    return record, trace


def _task_id(phase: str, cot_count: int, item: BenchItem) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in item.item_id)[:120]
    return f"{phase}.{cot_count}.{safe}.{uuid.uuid4().hex[:8]}"


def _key(record: dict[str, Any]) -> dict[str, Any]:
    return {name: record[name] for name in ("phase", "variant", "item_id", "benchmark", "difficulty", "correct")}


def _write_run_info(config: RunConfig, fabric: Fabric, phases: dict[Phase, list[BenchItem]]) -> None:
    """run.json: the config, the agents, the machine and the items of each phase (appended per invocation)."""
    path = config.out / "run.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    info = {
        "config": json.loads(config.model_dump_json()),
        "agents": list(fabric.agents) or previous.get("agents", []),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": _cpus()},
        "phases": {phase: [item.item_id for item in items] for phase, items in phases.items()},
        "invocations": [*previous.get("invocations", []), {"started_at": time.time()}],
    }
    path.write_text(json.dumps(info, indent=2))


def _cpus() -> int:
    import os

    return os.cpu_count() or 0
