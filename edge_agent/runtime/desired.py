"""Desired and reported state: the node converges on what an operator published, without losing work.

    desired/{node_id} (retained DesiredState, operators only)
        │ newer generation
        ▼
    check (backend installed? model fits the board's memory?)  ── no ──► beacon: desired_error, old agents serve on
        ▼
    another kit wheel named? fetch it, drain, hand it to the root updater, restart into it (runtime/kit.py);
        the new kit carries on from here
        ▼
    fetch missing models from peers (model_store.peers), sha256-checked
        ▼
    load the new agents while the old ones still serve
        ▼
    drain (beacon `draining`: routers send nothing new), wait for runs in flight, swap, close the old backends
        ▼
    beacon `online` with the new agents and `generation`; the applied state is kept in the state directory

An empty retained desired state (cleared by the operator) means "run your own config file" (generation 0).
A failure at any step leaves the old agents serving and says why in the beacon (`desired_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_agent.backends.registry import available_backends
from edge_agent.runtime.kit import KitRequest, KitResult, KitSpool, kit_step
from edge_agent.runtime.node import EdgeNode
from edge_agent.runtime.worker import AgentWorker
from model_store.holdings import ModelHoldings
from model_store.peers import fetch_model
from shared import topics as routes
from shared.config import AgentConfig
from shared.errors import MessageError
from shared.files import write_atomic
from shared.messages import DesiredAgent, DesiredState, ModelRef, NodeBeacon, decode, encode, wheel_version
from shared.mqtt import FabricClient

log = logging.getLogger(__name__)
MODEL_FILE_BACKENDS = frozenset({"auto", "llamacpp", "mlx"})
_ENGINE_MODULES = {"llamacpp": "llama_cpp", "mlx": "mlx_lm", "openai": "openai"}
_AUTO_ENGINES = ("llamacpp", "mlx")  # what `auto` may pick
_DIRECT_FIELDS = frozenset({"agent_id", "preset", "backend", "model", "max_in_flight", "backend_settings"})
MEMORY_SHARE = 0.8  # models may take this share of the board's memory; the rest is the OS and the runtime
PEERS_FIRST_S = 3.0  # a fetch asks only peers this long (their retained beacons are on the way), then the url too

WorkerBuilder = Callable[[Sequence[AgentConfig]], Awaitable[list[AgentWorker]]]


# --- pure parts -------------------------------------------------------------------------------------------


def agent_config(agent: DesiredAgent, model_path: Path | None) -> AgentConfig:
    """The node.yaml form of a desired agent; raises ValueError naming the field when it is not valid."""
    unknown = sorted(set(agent.settings) & _DIRECT_FIELDS)
    if unknown:
        raise ValueError(f"agent {agent.agent_id}: settings may not repeat {unknown}")
    data = {
        **agent.settings,
        "agent_id": agent.agent_id,
        "preset": agent.preset,
        "backend": agent.backend,
        "model": str(model_path) if model_path is not None else agent.model_name,
        "max_in_flight": agent.max_in_flight,
        "backend_settings": agent.backend_settings,
    }
    return AgentConfig.model_validate(data)


def backend_problem(name: str, known: Sequence[str], importable: Callable[[str], bool]) -> str:
    """Why `name` cannot run here ("" when it can): unknown, or its engine is not installed."""
    if name != "auto" and name not in known:
        return f"backend {name!r} is not installed on this node (it has: {', '.join(known)})"
    if name == "auto":
        if not any(importable(_ENGINE_MODULES[engine]) for engine in _AUTO_ENGINES):
            return "backend 'auto' needs llama-cpp-python or mlx-lm, and neither is installed on this node"
        return ""
    module = _ENGINE_MODULES.get(name)
    if module is not None and not importable(module):
        return f"backend {name!r} is missing: the Python package {module!r} is not installed on this node"
    return ""


def desired_problems(
    desired: DesiredState, known_backends: Sequence[str], importable: Callable[[str], bool], memory_bytes: int
) -> list[str]:
    """What keeps this node from running `desired`, found before fetching or loading anything."""
    problems = []
    for agent in desired.agents:
        problem = backend_problem(agent.backend, known_backends, importable)
        if problem:
            problems.append(f"agent {agent.agent_id}: {problem}")
        if agent.backend in MODEL_FILE_BACKENDS and agent.model is None:
            problems.append(f"agent {agent.agent_id}: backend {agent.backend!r} needs a model file (model by sha256)")
    needed = sum(agent.model.size_bytes for agent in desired.agents if agent.model is not None)
    budget = int(memory_bytes * MEMORY_SHARE)
    if needed > budget:
        problems.append(
            f"the models need {needed / 1e9:.2f} GB and this board has {memory_bytes / 1e9:.2f} GB of memory "
            f"({budget / 1e9:.2f} GB for models): too large"
        )
    ids = [agent.agent_id for agent in desired.agents]
    if len(set(ids)) != len(ids):
        problems.append(f"agent ids repeat: {ids}")
    return problems


def memory_bytes() -> int:
    """The board's physical memory."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # a platform without these names: do not refuse on memory
        return 1 << 50


def is_importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class PeerDirectory:
    """Which peer serves which model, from the beacons of the fabric (a node's own is left out)."""

    def __init__(self, own_node_id: str) -> None:
        self.own_node_id = own_node_id
        self.servers: dict[str, tuple[str, frozenset[str]]] = {}  # node id -> (model server, sha256s)

    def on_beacon_cleared(self, topic: str) -> None:
        self.servers.pop(topic.rsplit("/", 1)[-1], None)

    def on_beacon(self, topic: str, beacon: NodeBeacon) -> None:
        node_id = topic.rsplit("/", 1)[-1]
        if node_id == self.own_node_id:
            return
        if beacon.node_id != node_id or beacon.status == "offline" or not beacon.model_server:
            self.servers.pop(node_id, None)
            return
        self.servers[node_id] = (beacon.model_server, frozenset(model.sha256 for model in beacon.models))

    def serving(self, sha256: str) -> list[str]:
        return [server for server, held in self.servers.values() if sha256 in held]


def applied_file(state_dir: Path, node_id: str) -> Path:
    """Where a node keeps the desired state it applied (per node id, as its epoch: nodes may share a state dir)."""
    return state_dir / f"desired-{node_id}.json"


def load_applied(state_dir: Path, node_id: str) -> DesiredState | None:
    """The desired state this node applied last (kept across restarts), or None (its config file rules)."""
    try:
        state: DesiredState = decode(applied_file(state_dir, node_id).read_bytes(), DesiredState)
    except (OSError, MessageError):
        return None  # never applied one, or a corrupt file: start from the config file
    return state if state.node_id == node_id else None


@dataclass(frozen=True)
class KitUpgrades:
    """What a node needs to change its own kit: the spool of its updater, the version it runs, and how to stop
    so that its service manager starts the new kit (`restart`)."""

    spool: KitSpool
    running: str
    restart: Callable[[], None]
    timeout_s: float = 600.0


# --- the applier ------------------------------------------------------------------------------------------


class DesiredStateApplier:
    """Follows `desired/{node_id}` and swaps the node's agents to match, one change at a time.

    A newer desired state supersedes one still being checked or fetched (a rollback must not wait for the
    download it undoes); once loading has begun, the change runs to its end and the newer one follows.
    """

    def __init__(
        self,
        node: EdgeNode,
        own_agents: Sequence[AgentConfig],
        holdings: ModelHoldings,
        build: WorkerBuilder,
        state_dir: Path,
        applied: DesiredState | None = None,
        drain_timeout_s: float = 120.0,
        fetch_deadline_s: float = 1800.0,
        memory: int | None = None,
        current_agents: Sequence[AgentConfig] | None = None,
        kit: KitUpgrades | None = None,
    ) -> None:
        self.node = node
        self.own_agents = tuple(own_agents)
        self.holdings = holdings
        self.build = build
        self.state_dir = state_dir
        self.applied = applied
        self.drain_timeout_s = drain_timeout_s
        self.fetch_deadline_s = fetch_deadline_s
        self.memory = memory if memory is not None else memory_bytes()
        self.peers = PeerDirectory(node.settings.node_id)
        self.current_agents = list(current_agents if current_agents is not None else own_agents)
        self.kit = kit
        self._target: DesiredState | None = applied
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._applying: asyncio.Task[bool] | None = None
        self._committed = False  # past the point of no return (loading or swapping)
        self._cancel_fetch = threading.Event()
        self._stopping = False
        node.report.generation = applied.generation if applied else 0
        node.report.desired_generation = node.report.generation
        node.report.desired_kit = _kit_version(applied)

    async def attach(self, client: FabricClient) -> None:
        """Subscribe (before CONNECT, so the retained desired state arrives with the connection)."""
        desired = routes.DESIRED.on(self.node.topics, self.node.settings.node_id)
        await client.route(desired, self._on_desired, on_clear=self._on_desired_cleared)

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name=f"node[{self.node.settings.node_id}].desired")

    async def stop(self) -> None:
        self._stopping = True
        self._cancel_fetch.set()
        for task in (self._applying, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _on_desired_cleared(self, topic: str) -> None:
        self._set_target(None)

    def _on_desired(self, topic: str, desired: DesiredState) -> None:
        if desired.node_id != self.node.settings.node_id:
            log.warning("ignoring a desired state for %r on our topic", desired.node_id)
            return
        self._set_target(desired)

    def _set_target(self, desired: DesiredState | None) -> None:
        self._target = desired
        if self._applying is not None and not self._applying.done() and not self._committed:
            self._cancel_fetch.set()  # the fetch thread stops at its next chunk
            self._applying.cancel()
        self._wake.set()

    async def _follow(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            target = self._target
            generation = target.generation if target else 0
            if generation == (self.applied.generation if self.applied else 0):
                self._report(generation, "")
                continue
            self._cancel_fetch = threading.Event()
            self._committed = False
            self._applying = asyncio.create_task(self.apply(target), name=f"node[{self.node.settings.node_id}].apply")
            try:
                await asyncio.wait({self._applying})
                self._applying.result()
            except asyncio.CancelledError:
                if self._stopping:
                    raise
                log.info("desired generation %s superseded before it was loaded", generation)
            except Exception as error:  # one bad desired state must not stop the node from following the next
                log.exception("could not apply desired generation %s", generation)
                self._report(generation, f"{type(error).__name__}: {error}")

    def _report(self, desired_generation: int, error: str) -> None:
        report = self.node.report
        if (report.desired_generation, report.desired_error) != (desired_generation, error):
            report.desired_generation, report.desired_error = desired_generation, error[:2000]
            self.node.announce()

    async def apply(self, target: DesiredState | None) -> bool:
        """Converge on `target` (None: the node's own config); True when it runs, else the beacon says why."""
        generation = target.generation if target else 0
        self.node.report.desired_kit = _kit_version(target)
        self._report(generation, "")
        if target is not None:
            problems = desired_problems(target, available_backends(), is_importable, self.memory)
            if problems:
                self._report(generation, "; ".join(problems))
                return False
            if not await self._kit_runs(target):
                return False
        try:
            agents = await self._agent_configs(target)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a fetch or a config that failed: say why, keep serving the old agents
            self._report(generation, str(error))
            return False
        self._committed = True
        if loaded_bytes(self.node.workers.values()) + model_bytes(agents) <= self.memory * MEMORY_SHARE:
            swapped = await self._load_then_swap(agents, generation)
        else:
            swapped = await self._swap_then_load(agents, generation)
        if not swapped:
            return False
        self.applied, self.current_agents = target, agents
        self._keep(target)
        self.node.report.generation = generation
        self.node.report.models = self.holdings.references()
        self._report(generation, "")
        self.node.announce()
        log.info("node %s runs desired generation %s", self.node.settings.node_id, generation)
        return True

    async def _kit_runs(self, target: DesiredState) -> bool:
        """True when the desired kit (if any) runs; else it is being installed (the node restarts) or cannot be."""
        running = self.kit.running if self.kit is not None else ""
        last = self.kit.spool.last_result() if self.kit is not None else None
        step, why = kit_step(target.kit, running, target.generation, last)
        if step == "keep":
            return True
        if step == "upgrade" and (self.kit is None or not self.kit.spool.available):
            where = self.kit.spool.directory if self.kit is not None else "its kit spool"
            step, why = "failed", f"this node has no kit updater ({where} is missing): upgrade it with provisioning"
        if step == "failed":
            self._report(target.generation, why)
            return False
        await self._upgrade_kit(target)
        return False

    async def _upgrade_kit(self, target: DesiredState) -> None:
        """Fetch the wheel, drain, hand it to the updater; on success stop for the restart, else serve on."""
        assert self.kit is not None and target.kit is not None
        try:
            wheel = await self._ensure_model(target.kit)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # no peer has it, a wrong sha256: say why, keep serving the old kit
            self._report(target.generation, f"kit: {error}")
            return
        self._committed = True
        request = KitRequest(node_id=self.node.settings.node_id, generation=target.generation, wheel=target.kit)
        self.node.set_draining("kit", True)
        await self._drain()
        try:
            await asyncio.to_thread(self.kit.spool.hand_over, wheel, request)
        except OSError as error:  # a full disk, a spool we may not write: serve on with the old kit
            result = KitResult(generation=target.generation, sha256=target.kit.sha256, ok=False, error=str(error))
        else:
            result = await self.kit.spool.wait_result(request, self.kit.timeout_s)
        if result.ok:
            log.info("kit %s installed: restarting into it", result.version)
            self.kit.restart()  # stays draining until it stops: nothing new is sent to the old kit
            return
        self.node.set_draining("kit", False)
        self._report(target.generation, f"kit upgrade to {target.kit.name} failed: {result.error}")

    async def _load_then_swap(self, agents: list[AgentConfig], generation: int) -> bool:
        """Room for both: load the new agents while the old ones serve, then drain and swap (the short way)."""
        try:
            workers = await self.build(agents)
        except Exception as error:  # the new model does not load (corrupt file, wrong format, out of memory)
            self._report(generation, f"the new agents did not start: {type(error).__name__}: {error}")
            return False
        await self._swap(workers)
        return True

    async def _swap_then_load(self, agents: list[AgentConfig], generation: int) -> bool:
        """No room for both models: drain, unload the old agents, load the new; if they fail, load the old again."""
        self.node.set_draining("swap", True)
        try:
            await self._drain()
            await asyncio.to_thread(_close_all, await self.node.replace_workers([]))
            try:
                await self.node.replace_workers(await self.build(agents))
                return True
            except Exception as error:  # back to what ran before, so the node keeps serving
                self._report(generation, f"the new agents did not start: {type(error).__name__}: {error}")
                await self.node.replace_workers(await self.build(self.current_agents))
                return False
        finally:
            self.node.set_draining("swap", False)

    async def _agent_configs(self, target: DesiredState | None) -> list[AgentConfig]:
        if target is None:
            return list(self.own_agents)
        configs = []
        for agent in target.agents:
            path = None
            if agent.model is not None:
                path = await self._ensure_model(agent.model)
            configs.append(agent_config(agent, path))
        return configs

    async def _ensure_model(self, reference: ModelRef) -> Path:
        held = self.holdings.find(reference.sha256)
        if held is not None:
            return held.path
        rng = random.Random(f"{self.node.settings.node_id}/{reference.sha256}")
        cancelled = self._cancel_fetch
        async with self._watching_peers():
            report = await asyncio.to_thread(
                fetch_model,
                reference,
                lambda: self.peers.serving(reference.sha256),
                self.holdings,
                self.fetch_deadline_s,
                rng,
                cancelled=cancelled,
                url_after_s=PEERS_FIRST_S,
            )
        log.info("fetched model %s from %s", reference.name, ", ".join(report.sources) or "(held)")
        self.node.report.models = self.holdings.references()
        self.node.announce()  # we serve it too from now on: the model spreads from peers
        return report.path

    @contextlib.asynccontextmanager
    async def _watching_peers(self) -> AsyncIterator[None]:
        """The fabric's beacons (who serves which model), only while fetching: a node of a large fleet does not
        receive every beacon change of every other node the rest of the time."""
        client, beacons = self.node.client, routes.BEACONS.on(self.node.topics)
        if client is not None:  # the retained beacons come with the SUBACK
            await client.route(beacons, self.peers.on_beacon, on_clear=self.peers.on_beacon_cleared)
        try:
            yield
        finally:
            if client is not None:
                with contextlib.suppress(Exception):  # a lost connection drops the subscription anyway
                    await client.unsubscribe(beacons.topic_filter)
                self.peers.servers.clear()

    async def _drain(self) -> None:
        if not await self.node.wait_idle(self.drain_timeout_s):
            log.warning("runs in flight after %.0f s: cancelling them (routers re-dispatch)", self.drain_timeout_s)

    async def _swap(self, workers: list[AgentWorker]) -> None:
        """Drain, swap, close the old backends, serve again."""
        self.node.set_draining("swap", True)
        try:
            await self._drain()
            old = await self.node.replace_workers(workers)
            await asyncio.to_thread(_close_all, old)
        finally:
            self.node.set_draining("swap", False)

    def _keep(self, target: DesiredState | None) -> None:
        path = applied_file(self.state_dir, self.node.settings.node_id)
        try:
            if target is None:
                path.unlink(missing_ok=True)
            else:
                write_atomic(path, encode(target))
        except OSError as error:  # the node runs it anyway; after a restart it follows the retained state again
            log.warning("could not keep the applied desired state in %s: %s", path, error)


def _kit_version(target: DesiredState | None) -> str:
    if target is None or target.kit is None:
        return ""
    try:
        return wheel_version(target.kit.name)
    except ValueError:
        return target.kit.name[:64]


def model_bytes(agents: Sequence[AgentConfig]) -> int:
    """What loading these agents' model files takes (about their size)."""
    return sum(_file_size(agent.model) for agent in agents)


def loaded_bytes(workers: Iterable[AgentWorker]) -> int:
    """What the running agents' model files take."""
    return sum(_file_size(str(worker.backend.model)) for worker in workers)


def _file_size(path: str) -> int:
    try:
        candidate = Path(path)
        return candidate.stat().st_size if candidate.is_file() else 0
    except (OSError, ValueError):
        return 0


def _close_all(workers: Sequence[AgentWorker]) -> None:
    for worker in workers:
        try:
            worker.backend.close()
        except Exception:  # a backend that fails to close must not stop the swap
            log.exception("closing agent %s", worker.profile.agent_id)


def applied_agents(applied: DesiredState | None, holdings: ModelHoldings) -> list[AgentConfig] | None:
    """The agents of the desired state applied before a restart, when its models are still here."""
    if applied is None:
        return None
    configs = []
    for agent in applied.agents:
        held = holdings.find(agent.model.sha256) if agent.model is not None else None
        if agent.model is not None and held is None:
            return None
        try:
            configs.append(agent_config(agent, held.path if held else None))
        except ValueError:
            return None
    return configs
