"""Plain-text views of a FabricSnapshot and of task events (pure: the caller passes `now`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fleet_observe.snapshot import FabricSnapshot, TaskRecord
from shared.messages import TaskEvent

AGENT_HEADERS = (
    "NODE",
    "AGENT",
    "BACKEND",
    "MODEL",
    "CAPABILITIES",
    "LOAD",
    "LATENCY",
    "TOK/S",
    "RUNS",
    "EPOCH",
    "STATUS",
    "SEEN",
)
ROUTER_HEADERS = ("ROUTER", "EPOCH", "STATUS", "SEEN")
TASK_HEADERS = ("TASK", "STATUS", "LATENCY", "EVENTS", "QUERY / ANSWER")
MAX_CELL = 40


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; cells longer than MAX_CELL are cut with an ellipsis."""
    lines = [list(headers), *([_cut(cell) for cell in row] for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(headers))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def status_text(snapshot: FabricSnapshot, now: float) -> str:
    """The `edge-agent status` view: agents, then routers."""
    agent_rows = [
        (
            row.node_id,
            row.agent_id,
            row.backend,
            _model_name(row.model),
            ",".join(row.capabilities) or "-",
            _number(row.load, "{:.0%}"),
            _number(row.latency_ema_ms, "{:.0f} ms"),
            _number(row.tokens_per_second, "{:.1f}"),
            _runs(row.runs, row.errors),
            str(row.epoch),
            row.status or ("online" if row.online else "offline"),
            ago(now - row.last_seen),
        )
        for row in snapshot.agent_rows()
    ]
    online = len(snapshot.online_nodes())
    parts = [f"nodes: {online} online, {len(snapshot.nodes) - online} offline; agents: {len(agent_rows)}"]
    parts.append(format_table(AGENT_HEADERS, agent_rows) if agent_rows else "(no node has announced itself)")
    routers = [
        (row.router_id, str(row.epoch), "online" if row.online else "offline", ago(now - row.last_seen))
        for row in snapshot.router_rows()
    ]
    parts.append(format_table(ROUTER_HEADERS, routers) if routers else "(no router has announced itself)")
    return "\n\n".join(parts)


def tasks_text(tasks: Sequence[TaskRecord], now: float) -> str:
    if not tasks:
        return "(no task seen yet)"
    rows = [
        (
            task.task_id[:12],
            task.status,
            f"{task.latency_ms(now):.0f} ms",
            str(len(task.events)),
            f"{task.query[:30]!r} -> {task.answer!r}" if task.answer is not None else repr(task.query[:40]),
        )
        for task in tasks
    ]
    return format_table(TASK_HEADERS, rows)


def event_line(event: TaskEvent, started_at: float) -> str:
    """One readable line per trace event, with the time since the task's first event."""
    describe = _DESCRIBERS.get(event.event, _describe_generic)
    offset = f"+{event.at - started_at:.3f}s"
    return f"{offset:>9}  {event.event:<12} {describe(event.data)}"


def ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


# --- helpers ------------------------------------------------------------------------------------------------


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _number(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _runs(runs: int | None, errors: int | None) -> str:
    if runs is None:
        return "-"
    return f"{runs}" if not errors else f"{runs} ({errors} err)"


def _model_name(model: str) -> str:
    return model.rsplit("/", 1)[-1]


def _subtask(data: dict[str, Any]) -> str:
    index = data.get("subtask")
    chain = f"chain {data['chain']}" if isinstance(data.get("chain"), int) else ""
    if not isinstance(index, int):
        return chain
    step = "plan" if index < 0 else f"subtask {index + 1}"
    return f"{chain} {step}" if chain else step


def _describe_received(data: dict[str, Any]) -> str:
    return f"query {str(data.get('query', ''))[:80]!r}"


def _describe_planned(data: dict[str, Any]) -> str:
    if data.get("chains"):
        return f"{len(data['chains'])} chain(s) to run, then vote on their answers"
    plan = data.get("plan") or []
    how = "planning skipped" if data.get("skipped") else "fallback plan" if data.get("fallback") else "voted plan"
    chosen = f", chosen from {data['chosen']}" if data.get("chosen") else ""
    return f"{len(plan)} step(s) ({how}{chosen})"


def _describe_screened(data: dict[str, Any]) -> str:
    candidates = data.get("candidates") or []
    scores = ", ".join(
        f"{c.get('agent')} score={c.get('score')} ucb={c.get('ucb')}" for c in candidates if isinstance(c, dict)
    )
    return f"{_subtask(data)}: {scores or 'no candidates'}"


def _describe_dispatched(data: dict[str, Any]) -> str:
    return f"{_subtask(data)} -> {data.get('agent')} ({data.get('dispatch_id')})"


def _describe_result(data: dict[str, Any]) -> str:
    head = f"{_subtask(data)} <- {data.get('agent')}"
    if data.get("error"):
        return f"{head} error {data['error']}"
    return f"{head} {str(data.get('answer', ''))[:60]!r} in {data.get('latency_ms')} ms, {data.get('tokens')} tokens"


def _describe_redispatched(data: dict[str, Any]) -> str:
    return (
        f"{_subtask(data)}: {data.get('failed_agent')} failed ({data.get('error')}) "
        f"-> {data.get('next_agent') or 'no candidate left'}"
    )


def _describe_voted(data: dict[str, Any]) -> str:
    if data.get("early_stop"):
        return f"{_subtask(data)}: decided early, {data.get('outstanding')} run(s) cancelled"
    return f"{_subtask(data)}: winner {str(data.get('winner', ''))[:60]!r} weights {_compact(data.get('weights'))}"


def _describe_rewarded(data: dict[str, Any]) -> str:
    return f"{_subtask(data)}: {_compact(data.get('rewards'))}"


def _describe_answered(data: dict[str, Any]) -> str:
    return f"{str(data.get('answer', ''))[:80]!r} in {data.get('elapsed_ms')} ms"


def _describe_failed(data: dict[str, Any]) -> str:
    message = f": {data['message']}" if data.get("message") else ""
    return f"{data.get('code', 'unknown')}{message}"


def _describe_placed(data: dict[str, Any]) -> str:
    """Where a subtask of a multi-site fleet runs and why (router/locality.py)."""
    sides = [
        f"{side} {data[side].get('agent')} (reward {data[side].get('reward')}, load {data[side].get('load')})"
        for side in ("local", "remote")
        if isinstance(data.get(side), dict)
    ]
    return f"{data.get('scope')} for site {data.get('site')}: {data.get('reason')}" + (
        f"; {'; '.join(sides)}" if sides else ""
    )


def _describe_generic(data: dict[str, Any]) -> str:
    return _compact(data)


def _compact(value: Any) -> str:
    text = json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= 160 else text[:157] + "..."


_DESCRIBERS = {
    "received": _describe_received,
    "planned": _describe_planned,
    "screened": _describe_screened,
    "dispatched": _describe_dispatched,
    "result": _describe_result,
    "redispatched": _describe_redispatched,
    "voted": _describe_voted,
    "rewarded": _describe_rewarded,
    "answered": _describe_answered,
    "failed": _describe_failed,
    "placed": _describe_placed,
}
