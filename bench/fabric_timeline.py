"""Where the wall-clock time of one task goes, hop by hop, in `bench.fabric_overhead`'s one-at-a-time phase.

Run with `python -m bench.fabric_timeline [--brokers mosquitto] [--tasks 200]`.

Every process of the benchmark (client, relays, router, agent) stamps, with `time.perf_counter_ns` (one monotonic
clock for every process of the machine), the moments a message crosses it: `publish` (queued), `write` (a send()
returned), `readable` (the socket woke the event loop), `on_message` (paho decoded it), `dispatch` (its handler
starts). The stamps come from wrapping paho's and `FabricClient`'s methods in each process (a sitecustomize on
PYTHONPATH while the benchmark runs, see `install`). Printed: for the relay and for the router, the median time of
each hop after the client's publish, over the tasks of the one-at-a-time phase.

A stamp costs a few microseconds (one write to the log), so the figures are those of a slightly slower system:
compare them with each other. A `write` may return after its receiver has already run (the sender was preempted
inside send() on a busy machine); the next hop's arrival is the figure that counts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV = "FABRIC_TIMELINE"  # the log every process appends its stamps to
SITECUSTOMIZE = "import bench.fabric_timeline\nbench.fabric_timeline.install()\n"

Step = tuple[str, str, str, str | None]  # label, role, stamp kind, topic kind (None: any)
RELAY_STEPS: list[Step] = [
    ("client publishes the task", "client", "publish", "submit"),
    ("relay-router has it", "relay-router", "on_message", "submit"),
    ("relay-router publishes the run", "relay-router", "publish", "run"),
    ("relay-agent has it", "relay-agent", "on_message", "run"),
    ("relay-agent publishes the result", "relay-agent", "publish", "inbox"),
    ("relay-router has it", "relay-router", "on_message", "inbox"),
    ("relay-router publishes the reply", "relay-router", "publish", "reply"),
    ("client has it", "client", "on_message", "reply"),
]
ROUTER_STEPS: list[Step] = [
    ("client publishes the task", "client", "publish", "submit"),
    ("client wrote it", "client", "write", None),
    ("router socket readable", "router", "readable", None),
    ("router paho decoded it", "router", "on_message", "submit"),
    ("router handler starts", "router", "dispatch", "submit"),
    ("router publishes the claim", "router", "publish", "ledger"),
    ("router publishes the run", "router", "publish", "run"),
    ("router wrote the run", "router", "write", None),
    ("agent socket readable", "agent", "readable", None),
    ("agent handler starts", "agent", "dispatch", "run"),
    ("agent publishes the result", "agent", "publish", "inbox"),
    ("agent wrote it", "agent", "write", None),
    ("router socket readable", "router", "readable", None),
    ("router handler starts", "router", "dispatch", "inbox"),
    ("router publishes the reply", "router", "publish", "reply"),
    ("router wrote it", "router", "write", None),
    ("client socket readable", "client", "readable", None),
    ("client handler starts", "client", "dispatch", "reply"),
]


# --- stamping (in every process of the benchmark) ----------------------------------------------------------


_installed: list[str] = []  # the log this process stamps to, once installed


def install() -> None:
    """Wrap paho's and FabricClient's methods to stamp into the log named by $FABRIC_TIMELINE (if set; once)."""
    path = os.environ.get(ENV)
    if not path or _installed:
        return
    _installed.append(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pid = os.getpid()
    clock = time.perf_counter_ns

    def stamp(kind: str, detail: str = "") -> None:
        os.write(fd, f"{clock()} {pid} {kind} {detail}\n".encode())

    stamp("start", " ".join(sys.orig_argv).replace(" ", "_"))
    import paho.mqtt.client as paho

    paho_client: Any = paho.Client
    wrap(paho_client, "_sock_send", lambda client, buf: None, lambda: stamp("write"))
    wrap(paho_client, "publish", lambda client, topic, *args, **kwargs: stamp("publish", topic))
    wrap(paho_client, "_handle_on_message", lambda client, message: stamp("on_message", message.topic))
    try:
        from shared.mqtt import FabricClient
    except ImportError:  # a process outside the kit's tree
        return
    fabric_client: Any = FabricClient
    wrap(fabric_client, "_on_readable", lambda client: stamp("readable"))
    wrap(fabric_client, "_dispatch", lambda client, topic, payload: stamp("dispatch", topic))


def wrap(owner: Any, name: str, before: Callable[..., None], after: Callable[[], None] | None = None) -> None:
    """Replace the method `name` of `owner` by one that calls `before` (with its arguments) and `after` around it."""
    original = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        before(*args, **kwargs)
        result = original(*args, **kwargs)
        if after is not None:
            after()
        return result

    setattr(owner, name, wrapped)


# --- the run --------------------------------------------------------------------------------------------------


def run(brokers: tuple[str, ...], tasks: int, log: Path) -> dict[str, Any]:
    """`bench.fabric_overhead.measure` with every process stamping to `log`, and phase marks from this one."""
    from bench import fabric_overhead

    with tempfile.TemporaryDirectory(prefix="fabric-timeline-") as site:
        Path(site, "sitecustomize.py").write_text(SITECUSTOMIZE)
        repo = str(fabric_overhead.REPO)
        saved = {key: os.environ.get(key) for key in (ENV, "PYTHONPATH")}
        os.environ[ENV] = str(log)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (site, repo, saved["PYTHONPATH"]) if p)
        install()
        mark = _marker(log)
        relay_client, router_client_loop = fabric_overhead.relay_client, fabric_overhead.router_client_loop

        def marked_relay(port: int, count: int, concurrency: int, *args: Any, **kwargs: Any) -> Any:
            mark(f"relay {count} {concurrency}")
            try:
                return relay_client(port, count, concurrency, *args, **kwargs)
            finally:
                mark("end")

        async def marked_router(connection: object, count: int, clients: int, *args: Any, **kwargs: Any) -> Any:
            mark(f"router {count} {clients}")
            try:
                return await router_client_loop(connection, count, clients, *args, **kwargs)
            finally:
                mark("end")

        fabric_overhead.relay_client, fabric_overhead.router_client_loop = marked_relay, marked_router  # type: ignore[assignment]
        try:
            return fabric_overhead.measure(tasks, 4, brokers)
        finally:
            fabric_overhead.relay_client, fabric_overhead.router_client_loop = relay_client, router_client_loop
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _marker(log: Path) -> Callable[[str], None]:
    pid = os.getpid()

    def mark(phase: str) -> None:
        with log.open("a") as file:
            file.write(f"{time.perf_counter_ns()} {pid} phase {phase.replace(' ', '_')}\n")

    return mark


# --- analysis (pure) ------------------------------------------------------------------------------------------

Stamp = tuple[int, str, str, str]  # ns, role, kind, detail


def read_log(text: str, client_pid: int) -> list[Stamp]:
    """The stamps in time order, each with the role of its process (from the process's command line)."""
    roles: dict[str, str] = {str(client_pid): "client"}
    stamps: list[Stamp] = []
    for line in text.splitlines():
        ns, pid, kind, *rest = line.split(" ", 3)
        detail = rest[0] if rest else ""
        if kind == "start":
            roles.setdefault(pid, role_of(detail))
        else:
            stamps.append((int(ns), pid, kind, detail))
    return sorted((ns, roles.get(pid, pid), kind, detail) for ns, pid, kind, detail in stamps)


def role_of(command: str) -> str:
    for marker, role in (
        ("relay-router", "relay-router"),
        ("relay-agent", "relay-agent"),
        ("cli_start", "agent"),
        ("cli_router", "router"),
    ):
        if marker in command:
            return role
    return "other"


def topic_kind(topic: str) -> str:
    for key in ("submit", "ledger", "run", "inbox", "reply"):
        if f"/{key}" in topic:
            return key
    return ""


def one_at_a_time_tasks(stamps: list[Stamp], system: str) -> list[list[Stamp]]:
    """The stamps of each task of the measured one-at-a-time phase of `system` (relay or router; the second such
    phase, after the warm-up): from the client's publish of the task to its handling of the reply."""
    tasks: list[list[Stamp]] = []
    current: list[Stamp] | None = None
    seen, measuring = 0, False
    end = "on_message" if system == "relay" else "dispatch"
    for stamp in stamps:
        _, role, kind, detail = stamp
        if kind == "phase":
            name, *rest = detail.split("_")
            one_at_a_time = name == system and rest[-1:] == ["1"]
            seen += one_at_a_time
            measuring, current = one_at_a_time and seen == 2, None
        elif not measuring:
            continue
        elif role == "client" and kind == "publish" and topic_kind(detail) == "submit":
            current = [stamp]
        elif current is not None:
            current.append(stamp)
            if role == "client" and kind == end and topic_kind(detail) == "reply":
                tasks.append(current)
                current = None
    return tasks


def hop_times(task: list[Stamp], steps: list[Step]) -> list[float] | None:
    """Microseconds from the task's first stamp to each step's (None if a step is missing). Steps are found in
    order, except that a `write` does not move the search on: a send() may return after its receiver ran."""
    start, at, found = task[0][0], 0, []
    for _, role, kind, topic in steps:
        for index in range(at, len(task)):
            ns, stamp_role, stamp_kind, detail = task[index]
            if stamp_role == role and stamp_kind == kind and (topic is None or topic_kind(detail) == topic):
                found.append((ns - start) / 1000)
                if kind != "write":
                    at = index + 1
                break
        else:
            return None
    return found


def timeline(tasks: list[list[Stamp]], steps: list[Step]) -> list[tuple[str, float]]:
    """The median time of each step over the tasks that show every step."""
    complete = [times for times in (hop_times(task, steps) for task in tasks) if times is not None]
    if not complete:
        return []
    return [(label, statistics.median(times[i] for times in complete)) for i, (label, *_) in enumerate(steps)]


def print_timeline(system: str, rows: list[tuple[str, float]], tasks: int) -> None:
    print(f"\n{system}: median of {tasks} one-at-a-time tasks, microseconds after the client's publish")
    previous = 0.0
    for label, at in rows:
        print(f"  {at:8.0f}  {at - previous:+7.0f}  {label}")
        previous = at


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default="mosquitto", help="Comma-separated: mosquitto, amqtt.")
    parser.add_argument("--tasks", type=int, default=200, help="Tasks of the one-at-a-time phase.")
    parser.add_argument("--log", type=Path, help="Keep the stamps in this file (default: a temporary one).")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fabric-timeline-log-") as directory:
        log = arguments.log or Path(directory, "stamps.log")
        log.unlink(missing_ok=True)
        for kind in arguments.brokers.split(","):
            log.write_text("")
            result = run((kind,), arguments.tasks, log)
            figures = result["brokers"][kind]
            print(
                f"\n{kind}: p50 relay {figures['relay']['p50_ms']:.2f} ms, router {figures['router']['p50_ms']:.2f} ms"
            )
            stamps = read_log(log.read_text(), os.getpid())
            for system, steps in (("relay", RELAY_STEPS), ("router", ROUTER_STEPS)):
                tasks = one_at_a_time_tasks(stamps, system)
                print_timeline(system, timeline(tasks, steps), len(tasks))


if __name__ == "__main__":
    main()
