"""Desired and reported state with real processes on both brokers: a node swaps its agents to what an operator
published and reports the generation; what it cannot run (too large, backend missing) is reported, not run; a
rolling `fleet apply` whose canary fails is rolled back and exits non-zero, the other node untouched."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import os
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from integration.fleet.fleetkit import FabricWatch, Processes, cli, write_node_config
from support import RunningBroker, connection_for, http_server

from provisioning.rollout import FleetLink
from shared.client import FabricTaskClient
from shared.messages import DesiredAgent, DesiredState, ModelRef

pytestmark = pytest.mark.slow


@pytest.fixture
def processes(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[Processes]:
    started = Processes(tmp_path, subprocess_env)
    yield started
    started.stop()


def echo_agent(agent_id: str, **settings: Any) -> DesiredAgent:
    return DesiredAgent(agent_id=agent_id, preset="math", backend="echo", model_name="echo-v2", settings=settings)


def run_showing_logs(processes: Processes, scenario: Coroutine[Any, Any, None], timeout_s: float) -> None:
    """Run a test's scenario within `timeout_s`; on any failure, print the processes' logs before raising."""
    try:
        asyncio.run(asyncio.wait_for(scenario, timeout_s))
    except BaseException:
        print(processes.logs())
        raise


def start_echo_node(
    processes: Processes,
    tmp_path: Path,
    node: str,
    connection: Any,
    model_server: dict[str, Any] | None = None,
    own_state: bool = False,
) -> None:
    """A node process with one echo agent (`<node>-math`), its own state folder and, if given, a model server."""
    agents = [{"agent_id": f"{node}-math", "backend": "echo", "preset": "math"}]
    extra = {"model_server": model_server} if model_server is not None else {}
    config = write_node_config(
        tmp_path / f"{node}.yaml", node, connection, agents=agents, state_dir=str(tmp_path / node), **extra
    )
    processes.start(node, "start", "-c", str(config), own_state=own_state)


def test_a_node_swaps_to_its_desired_state_and_reports_what_it_cannot_run(
    any_broker: RunningBroker, fabric: str, tmp_path: Path, processes: Processes
) -> None:
    connection = connection_for(any_broker, fabric)
    agent = {"agent_id": "board-old", "backend": "echo", "preset": "math"}
    config = write_node_config(tmp_path / "board.yaml", "board", connection, agents=[agent])
    processes.start("board", "start", "-c", str(config))
    processes.start("router", "router", "-b", any_broker.url, "--fabric", fabric)

    async def scenario() -> None:
        watch = await FabricWatch(connection).open()
        link = await FleetLink(connection).open(settle_s=0.2)
        await watch.until(lambda: "board" in watch.beacons, what="the board online")
        assert watch.beacons["board"].generation == 0
        await link.publish_desired(
            "board", DesiredState(node_id="board", generation=1, agents=(echo_agent("board-new"),))
        )
        await watch.until(lambda: watch.beacons["board"].generation == 1, what="generation 1")
        beacon = watch.beacons["board"]
        assert beacon.status == "online" and [a.agent_id for a in beacon.agents] == ["board-new"]
        assert beacon.agents[0].model == "echo-v2"
        async with FabricTaskClient(connection.model_copy(update={"connect_timeout_s": 15})) as client:
            answer = await client.submit("2 + 2?", agent_id="board-new", cot_count=1, plan_k=1, timeout_s=60)
            assert answer.subtasks[0].ballots[0].agent_id == "board-new"
        huge = ModelRef(name="huge.gguf", sha256="b" * 64, size_bytes=10**16)
        too_large = DesiredAgent(agent_id="board-new", backend="llamacpp", model=huge)
        await link.publish_desired("board", DesiredState(node_id="board", generation=2, agents=(too_large,)))
        await watch.until(lambda: watch.beacons["board"].desired_generation == 2, what="generation 2 seen")
        await watch.until(lambda: bool(watch.beacons["board"].desired_error), what="the reason")
        assert "too large" in watch.beacons["board"].desired_error
        missing = DesiredAgent(agent_id="board-new", backend="no-such-engine", model_name="x")
        await link.publish_desired("board", DesiredState(node_id="board", generation=3, agents=(missing,)))
        await watch.until(lambda: watch.beacons["board"].desired_generation == 3, what="generation 3 seen")
        await watch.until(lambda: "not installed" in watch.beacons["board"].desired_error, what="backend missing")
        assert watch.beacons["board"].generation == 1  # still running what it could run
        await link.close()
        await watch.close()

    run_showing_logs(processes, scenario(), 240)


def _serve(directory: Path) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.mark.llamacpp
def test_a_failing_canary_is_rolled_back_and_the_rollout_exits_non_zero(
    any_broker: RunningBroker,
    fabric: str,
    tmp_path: Path,
    processes: Processes,
    subprocess_env: dict[str, str],
) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    connection = connection_for(any_broker, fabric)
    for node in ("board-1", "board-2"):
        start_echo_node(processes, tmp_path, node, connection)
    processes.start("router", "router", "-b", any_broker.url, "--fabric", fabric)
    served = tmp_path / "served"
    served.mkdir()
    broken = b"GGUF" + os.urandom(4096)  # the right magic, then nothing a model holds
    (served / "broken.gguf").write_bytes(broken)
    pin = hashlib.sha256(broken).hexdigest()  # plain http models must be pinned (docs/operations-security.md)
    (tmp_path / "inventory.ini").write_text("[boards]\nboard-1\nboard-2\n")
    env = {**subprocess_env, "SYMPHONY_EDGE_ARTIFACTS": str(tmp_path / "artifacts")}

    async def scenario(url: str) -> None:
        fleet = {
            "fabric": fabric,
            "broker": {"hosts": ["board-1"]},
            "agents": {
                "boards": [{"preset": "math", "backend": "llamacpp", "model": f"{url}/broken.gguf#sha256={pin}"}]
            },
        }
        (tmp_path / "fleet.yml").write_text(yaml.safe_dump(fleet))
        watch = await FabricWatch(connection).open()
        await watch.until(lambda: {"board-1", "board-2"} <= set(watch.beacons), what="both boards online")
        arguments = ["fleet", "apply", str(tmp_path / "fleet.yml"), "-b", any_broker.url, "--fabric", fabric]
        result = await asyncio.to_thread(cli, env, *arguments, "--rolling", "1", "--deadline", "90", timeout=240)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "canary failed" in result.stderr and "did not start" in result.stderr, result.stdout + result.stderr
        assert "rolled back board-1" in result.stdout
        await watch.until(lambda: watch.beacons["board-1"].desired_generation == 0, what="the canary rolled back")
        assert watch.beacons["board-1"].generation == 0 and watch.beacons["board-1"].status == "online"
        assert [a.agent_id for a in watch.beacons["board-1"].agents] == ["board-1-math"]
        assert watch.beacons["board-2"].desired_generation == 0  # never touched
        link = await FleetLink(connection).open(settle_s=0.5)
        assert "board-2" not in link.desired and "board-1" not in link.desired
        await link.close()
        await watch.close()

    with http_server(_serve(served)) as url:
        run_showing_logs(processes, scenario(url), 300)


@pytest.mark.llamacpp
def test_a_model_is_fetched_from_a_peer_and_the_llamacpp_agent_swapped_in(
    amqtt_broker: RunningBroker, fabric: str, tmp_path: Path, processes: Processes
) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from model_store import ModelNotFound, default_model_path
    from model_store.holdings import sha256_file

    try:
        bundled = default_model_path()
    except ModelNotFound:
        pytest.skip("the bundled SmolLM2 is not installed")
    connection = connection_for(amqtt_broker, fabric)
    # A model only the seed holds: SmolLM2 with bytes appended (llama.cpp reads tensors by offset and ignores them).
    seed_models = tmp_path / "seed" / "models"
    seed_models.mkdir(parents=True)
    variant = seed_models / "smollm2-variant.gguf"
    variant.write_bytes(bundled.read_bytes() + b"\0" * 4096)
    reference = ModelRef(name=variant.name, sha256=sha256_file(variant), size_bytes=variant.stat().st_size)
    server = {"host": "127.0.0.1", "port": 0, "advertise": "127.0.0.1"}
    for node in ("seed", "target"):
        start_echo_node(processes, tmp_path, node, connection, server, own_state=True)
    processes.start("router", "router", "-b", amqtt_broker.url, "--fabric", fabric)

    async def scenario() -> None:
        watch = await FabricWatch(connection).open()
        await watch.until(lambda: {"seed", "target"} <= set(watch.beacons), what="both nodes online")
        assert reference.sha256 in {m.sha256 for m in watch.beacons["seed"].models}
        assert reference.sha256 not in {m.sha256 for m in watch.beacons["target"].models}
        link = await FleetLink(connection).open(settle_s=0.2)
        agent = DesiredAgent(
            agent_id="target-math", preset="math", backend="llamacpp", model=reference, settings={"threads": 1}
        )
        await link.publish_desired("target", DesiredState(node_id="target", generation=1, agents=(agent,)))
        await watch.until(
            lambda: watch.beacons["target"].generation == 1 or bool(watch.beacons["target"].desired_error),
            timeout=180,
            what="generation 1",
        )
        beacon = watch.beacons["target"]
        assert beacon.desired_error == "" and beacon.status == "online"
        assert beacon.agents[0].backend == "llamacpp" and beacon.agents[0].model.endswith(".gguf")
        assert reference.sha256 in {m.sha256 for m in beacon.models}  # it serves the model on from now on
        fetched = list((tmp_path / "target" / "models").glob("smollm2-variant-*.gguf"))
        assert len(fetched) == 1 and sha256_file(fetched[0]) == reference.sha256
        async with FabricTaskClient(connection.model_copy(update={"connect_timeout_s": 15})) as client:
            answer = await client.submit(
                "What is 2 + 3?", agent_id="target-math", cot_count=1, plan_k=1, max_tokens=16, timeout_s=120
            )
            assert answer.subtasks[0].ballots[0].agent_id == "target-math"
        await link.close()
        await watch.close()

    run_showing_logs(processes, scenario(), 300)


@pytest.mark.llamacpp
def test_a_model_no_peer_holds_comes_from_the_control_nodes_model_server(
    mosquitto_broker: RunningBroker,
    fabric: str,
    tmp_path: Path,
    processes: Processes,
    subprocess_env: dict[str, str],
) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from broker.policy import free_port
    from model_store import ModelNotFound, default_model_path

    try:
        bundled = default_model_path()
    except ModelNotFound:
        pytest.skip("the bundled SmolLM2 is not installed")
    connection = connection_for(mosquitto_broker, fabric)
    served = tmp_path / "control-models"
    served.mkdir()
    (served / "smollm2-new.gguf").write_bytes(bundled.read_bytes() + b"\0" * 1024)
    port = free_port()
    processes.start("models", "models", "serve", str(served), "--host", "127.0.0.1", "--port", str(port))
    agents = [{"agent_id": "solo-math", "backend": "echo", "preset": "math"}]
    config = write_node_config(
        tmp_path / "solo.yaml", "solo", connection, agents=agents, state_dir=str(tmp_path / "solo")
    )
    processes.start("solo", "start", "-c", str(config), own_state=True)
    (tmp_path / "inventory.ini").write_text("[boards]\nsolo\n")
    fleet = {
        "fabric": fabric,
        "broker": {"hosts": ["solo"]},
        "agents": {"solo": [{"preset": "math", "backend": "llamacpp", "model": str(served / "smollm2-new.gguf")}]},
    }
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump(fleet))

    async def scenario() -> None:
        watch = await FabricWatch(connection).open()
        await watch.until(lambda: "solo" in watch.beacons, what="the node online")
        arguments = ["fleet", "apply", str(tmp_path / "fleet.yml"), "-b", mosquitto_broker.url, "--fabric", fabric]
        arguments += ["--model-source", f"http://127.0.0.1:{port}", "--deadline", "150"]
        result = await asyncio.to_thread(cli, subprocess_env, *arguments, timeout=240)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 of 1 node(s) converged" in result.stdout
        status = await asyncio.to_thread(
            cli, subprocess_env, "fleet", "status", "-b", mosquitto_broker.url, "--fabric", fabric
        )
        assert status.returncode == 0 and "solo" in status.stdout and "yes" in status.stdout, status.stdout
        assert watch.beacons["solo"].agents[0].backend == "llamacpp"
        assert list((tmp_path / "solo" / "models").glob("smollm2-new-*.gguf"))
        await watch.close()

    run_showing_logs(processes, scenario(), 300)


def test_a_model_server_that_cannot_listen_does_not_stop_the_node(
    amqtt_broker: RunningBroker, fabric: str, tmp_path: Path, processes: Processes
) -> None:
    connection = connection_for(amqtt_broker, fabric)
    agents = [{"agent_id": "lone-math", "backend": "echo", "preset": "math"}]
    server = {"host": "no-such-host.invalid", "port": 8765}
    config = write_node_config(tmp_path / "lone.yaml", "lone", connection, agents=agents, model_server=server)
    processes.start("lone", "start", "-c", str(config))

    async def scenario() -> None:
        watch = await FabricWatch(connection).open()
        await watch.until(lambda: "lone" in watch.beacons, what="the node online")
        assert watch.beacons["lone"].status == "online" and watch.beacons["lone"].model_server == ""
        await watch.close()

    run_showing_logs(processes, scenario(), 120)


def test_two_nodes_on_one_host_both_serve_their_models_to_a_third(
    amqtt_broker: RunningBroker, fabric: str, tmp_path: Path, processes: Processes
) -> None:
    from broker.policy import free_port
    from model_store.holdings import sha256_file

    connection = connection_for(amqtt_broker, fabric)
    port = free_port()  # both nodes ask for the same port, as two nodes with the default 8765 would
    references = {}
    for node in ("left", "right"):
        models = tmp_path / node / "models"
        models.mkdir(parents=True)
        (models / f"{node}.gguf").write_bytes(b"GGUF" + os.urandom(64 * 1024))  # only this node holds it
        path = models / f"{node}.gguf"
        references[node] = ModelRef(name=path.name, sha256=sha256_file(path), size_bytes=path.stat().st_size)
    server = {"host": "127.0.0.1", "port": port, "advertise": "127.0.0.1"}

    def start(node: str, model_server: dict[str, Any]) -> None:
        start_echo_node(processes, tmp_path, node, connection, model_server, own_state=True)

    async def scenario() -> None:
        watch = await FabricWatch(connection).open()
        start("left", server)
        await watch.until(lambda: "left" in watch.beacons, what="the first node online")
        start("right", server)
        start("third", {**server, "port": 0})
        await watch.until(lambda: {"right", "third"} <= set(watch.beacons), what="the other nodes online")
        left, right = watch.beacons["left"].model_server, watch.beacons["right"].model_server
        assert left == f"http://127.0.0.1:{port}"
        assert right.startswith("http://127.0.0.1:") and right != left  # the address it actually bound
        agents = tuple(
            DesiredAgent(agent_id=f"third-{node}", preset="math", backend="echo", model=reference)
            for node, reference in references.items()
        )
        link = await FleetLink(connection).open(settle_s=0.2)
        await link.publish_desired("third", DesiredState(node_id="third", generation=1, agents=agents))
        await watch.until(
            lambda: watch.beacons["third"].generation == 1 or bool(watch.beacons["third"].desired_error),
            what="generation 1",
        )
        assert watch.beacons["third"].desired_error == ""
        held = {model.sha256 for model in watch.beacons["third"].models}
        assert {reference.sha256 for reference in references.values()} <= held
        for node, reference in references.items():  # only that node held it and no URL was named: it served
            (fetched,) = (tmp_path / "third" / "models").glob(f"{node}-*.gguf")
            assert sha256_file(fetched) == reference.sha256
        await link.close()
        await watch.close()

    run_showing_logs(processes, scenario(), 240)
