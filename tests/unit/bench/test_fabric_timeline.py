"""The hop-by-hop timeline's analysis: stamps of several processes, phases, the median time of each step."""

from __future__ import annotations

from bench.fabric_timeline import RELAY_STEPS, one_at_a_time_tasks, read_log, timeline

CLIENT = 100


def relay_task(start_us: int, hops_us: list[int]) -> list[str]:
    """The stamps of one relayed task: each hop of RELAY_STEPS `hops_us[i]` after the previous one, plus noise."""
    pids = {"client": CLIENT, "relay-router": 101, "relay-agent": 102}
    topics = {"submit": "f/task/submit", "run": "f/agent/a/run", "inbox": "f/router/r/inbox", "reply": "f/reply/c"}
    lines, at = [], start_us
    for (_, role, kind, topic), hop in zip(RELAY_STEPS, hops_us, strict=True):
        at += hop
        lines.append(f"{at * 1000} {pids[role]} {kind} {topics[topic or 'submit']}")
        lines.append(f"{at * 1000 + 1} {pids[role]} write")  # stamps no step asks for are skipped
    return lines


def log_text() -> str:
    starts = [
        "0 101 start python_-m_bench.fabric_overhead_--port_1_--role_relay-router",
        "0 102 start python_-m_bench.fabric_overhead_--port_1_--role_relay-agent",
    ]
    warm_up = ["1000000 100 phase relay_50_1", *relay_task(2000, [0, 50, 5, 50, 5, 50, 5, 50]), "9000000 100 phase end"]
    measured = ["10000000 100 phase relay_300_1"]
    for index, hop in enumerate((10, 20, 30)):
        measured += relay_task(20_000 + index * 1000, [0, hop, 5, hop, 5, hop, 5, hop])
    concurrent = ["90000000 100 phase end", "91000000 100 phase relay_600_4", *relay_task(92_000, [0] + [1] * 7)]
    return "\n".join(starts + warm_up + measured + concurrent) + "\n"


def test_the_measured_phase_is_the_second_one_at_a_time_phase() -> None:
    stamps = read_log(log_text(), CLIENT)
    tasks = one_at_a_time_tasks(stamps, "relay")
    assert [task[0][0] for task in tasks] == [20_000_000, 21_000_000, 22_000_000]
    assert one_at_a_time_tasks(stamps, "router") == []


def test_each_step_is_the_median_over_the_tasks() -> None:
    stamps = read_log(log_text(), CLIENT)
    rows = timeline(one_at_a_time_tasks(stamps, "relay"), RELAY_STEPS)
    assert [label for label, _ in rows] == [label for label, *_ in RELAY_STEPS]
    assert [at for _, at in rows] == [0, 20, 25, 45, 50, 70, 75, 95]  # the middle task: hops of 20 us
