"""Desired states from the fleet file (pure, apart from hashing model files on the control node).

The same fleet file and inventory that `edge-agent provision` reads say what each node should run; this module
turns them into one `DesiredState` per node (agents with their model by name + sha256 + size, and the kit wheel
when `fleet apply --kit` names one), decides which
nodes change (a new generation only where the agents differ from the retained desired state), and tells whether
a node's beacon shows it converged.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from model_store.holdings import sha256_file
from provisioning.plan import FleetPlan
from provisioning.targets import needs_model_file
from shared.config import AgentConfig
from shared.messages import DesiredAgent, DesiredState, ModelRef, NodeBeacon, wheel_version

_DIRECT_FIELDS = frozenset({"agent_id", "preset", "backend", "model", "max_in_flight", "backend_settings"})

ModelLocator = Callable[[str], Path]
"""Turns a model spec of the fleet file ("default", a path, a URL) into a file on the control node."""


def model_reference(
    spec: str, locate: ModelLocator, cache: dict[str, ModelRef] | None = None, source: str | None = None
) -> ModelRef:
    """The content reference of a model spec; a URL spec stays in the reference (nodes may fall back to it)."""
    if cache is not None and spec in cache:
        return cache[spec]
    path = locate(spec)
    url = spec if urllib.parse.urlparse(spec).scheme in ("http", "https") else None
    digest = sha256_file(path)
    if url is None and source is not None:
        url = f"{source.rstrip('/')}/models/{digest}"
    reference = ModelRef(name=path.name, sha256=digest, size_bytes=path.stat().st_size, url=url)
    if cache is not None:
        cache[spec] = reference
    return reference


def kit_reference(wheel: Path, source: str | None = None) -> ModelRef:
    """The content reference of a kit wheel built on the control node (`source`: a model server as its `url`)."""
    digest = sha256_file(wheel)
    url = f"{source.rstrip('/')}/models/{digest}" if source is not None else None
    return ModelRef(name=wheel.name, sha256=digest, size_bytes=wheel.stat().st_size, url=url)


def desired_agent(agent: AgentConfig, model: ModelRef | None) -> DesiredAgent:
    """A node.yaml agent as it travels in a desired state (the runtime turns it back: agent_config)."""
    settings = agent.model_dump(mode="json", exclude_unset=True)
    return DesiredAgent(
        agent_id=agent.agent_id or "agent",
        preset=agent.preset,
        backend=agent.backend,
        model=model,
        model_name=agent.model if model is None else model.name,
        max_in_flight=agent.max_in_flight,
        backend_settings=dict(agent.backend_settings),
        settings={key: value for key, value in settings.items() if key not in _DIRECT_FIELDS},
    )


def wanted_agents(
    plan: FleetPlan, locate: ModelLocator, model_source: str | None = None
) -> dict[str, tuple[DesiredAgent, ...]]:
    """Node id -> the agents the fleet file gives it (only nodes that host agents).

    `model_source`: a model server (`edge-agent models serve`) named as each model's fallback `url`, for models
    no node holds yet; a model whose spec is a URL keeps that URL.
    """
    cache: dict[str, ModelRef] = {}
    wanted = {}
    for node in plan.nodes:
        if not node.agents:
            continue
        wanted[node.node_id] = tuple(
            desired_agent(
                agent, model_reference(agent.model, locate, cache, model_source) if needs_model_file(agent) else None
            )
            for agent in node.agents
        )
    return wanted


@dataclass(frozen=True)
class Change:
    """One node's move: from what is published now (None: nothing, it runs its config file) to `new`."""

    node_id: str
    previous: DesiredState | None
    new: DesiredState


def changes(
    wanted: Mapping[str, tuple[DesiredAgent, ...]],
    current: Mapping[str, DesiredState],
    issued_by: str,
    now: float | None = None,
    only: set[str] | None = None,
    kit: ModelRef | None = None,
) -> list[Change]:
    """The nodes whose agents (or kit) differ from their retained desired state, each with the next generation.

    `kit` None keeps the kit each retained state names (an apply without `--kit` never changes the kit).
    """
    now = time.time() if now is None else now
    found = []
    for node_id, agents in sorted(wanted.items()):
        if only is not None and node_id not in only:
            continue
        previous = current.get(node_id)
        node_kit = kit if kit is not None else (previous.kit if previous else None)
        if previous is not None and previous.agents == agents and _same_kit(previous.kit, node_kit):
            continue
        generation = (previous.generation if previous else 0) + 1
        new = DesiredState(
            node_id=node_id, generation=generation, agents=agents, kit=node_kit, issued_by=issued_by, issued_at=now
        )
        found.append(Change(node_id, previous, new))
    return found


def _same_kit(before: ModelRef | None, after: ModelRef | None) -> bool:
    return (before.sha256 if before else None) == (after.sha256 if after else None)


def kit_version(kit: ModelRef | None) -> str:
    """The version of the kit a desired state names ("" when none)."""
    if kit is None:
        return ""
    try:
        return wheel_version(kit.name)
    except ValueError:
        return kit.name[:64]


def rollback_of(change: Change, generation: int, issued_by: str, now: float | None = None) -> DesiredState | None:
    """The state that undoes `change` (None: clear the retained state, the node runs its config file again).

    Generations only grow, so the previous agents come back under a new generation number.
    """
    if change.previous is None:
        return None
    now = time.time() if now is None else now
    return change.previous.model_copy(update={"generation": generation + 1, "issued_by": issued_by, "issued_at": now})


@dataclass(frozen=True)
class Convergence:
    """Whether a node runs its desired state, and why not."""

    node_id: str
    desired: int
    reported: int | None
    status: str
    converged: bool
    why: str
    kit_desired: str = ""  # the kit version the desired state names ("": none)
    kit_reported: str = ""  # the kit version the node runs (its beacon's software_version)


def convergence(node_id: str, desired: DesiredState | None, beacon: NodeBeacon | None) -> Convergence:
    """Compare what an operator published with what the node reports in its beacon."""
    wanted = desired.generation if desired else 0
    kits = {"kit_desired": kit_version(desired.kit if desired else None)}
    if beacon is None:
        return Convergence(
            node_id, wanted, None, "unknown", False, "no beacon: the node never announced itself", **kits
        )
    kits["kit_reported"] = beacon.software_version
    reported = beacon.generation
    if beacon.status == "offline":
        return Convergence(node_id, wanted, reported, "offline", False, "offline", **kits)
    if reported == wanted:
        why = "draining (operator)" if beacon.drain_requested else ""
        return Convergence(node_id, wanted, reported, beacon.status, True, why, **kits)
    if beacon.desired_generation == wanted and beacon.desired_error:
        return Convergence(node_id, wanted, reported, beacon.status, False, beacon.desired_error, **kits)
    if beacon.desired_generation == wanted:
        doing = "applying (fetching, loading or draining)"
        if kits["kit_desired"] and kits["kit_desired"] != beacon.software_version:
            doing = f"upgrading the kit {beacon.software_version} -> {kits['kit_desired']}"
        return Convergence(node_id, wanted, reported, beacon.status, False, doing, **kits)
    return Convergence(node_id, wanted, reported, beacon.status, False, "has not seen this generation yet", **kits)
