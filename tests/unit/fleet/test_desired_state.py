"""The pure parts of fleet operations: what a node can run, which nodes change, convergence, rollback, routing."""

from __future__ import annotations

import pytest

from edge_agent.runtime.desired import PeerDirectory, agent_config, backend_problem, desired_problems
from provisioning.desired import Change, changes, convergence, desired_agent, rollback_of
from router.registry import AgentRegistry
from shared.config import AgentConfig
from shared.messages import AgentInfo, DesiredAgent, DesiredState, ModelRef, NodeBeacon
from shared.topics import Topics

MODEL = ModelRef(name="m.gguf", sha256="c" * 64, size_bytes=2_000_000_000)
GIB = 1 << 30


def state(node_id: str, generation: int, *agents: DesiredAgent) -> DesiredState:
    return DesiredState(node_id=node_id, generation=generation, agents=agents)


def beacon(node_id: str = "n1", status: str = "online", **fields: object) -> NodeBeacon:
    info = AgentInfo(agent_id=f"{node_id}-a", backend="echo", model="echo", max_in_flight=1)
    return NodeBeacon(node_id=node_id, epoch=1, instance_id="i", status=status, agents=(info,), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("backend", "installed", "problem"),
    [
        ("echo", set(), ""),
        ("llamacpp", {"llama_cpp"}, ""),
        ("llamacpp", set(), "'llama_cpp' is not installed"),
        ("mlx", set(), "'mlx_lm' is not installed"),
        ("vllm", {"llama_cpp"}, "'vllm' is not installed"),
        ("auto", set(), "neither is installed"),
        ("auto", {"mlx_lm"}, ""),
        ("openai", set(), "'openai' is not installed"),
        ("openai", {"openai"}, ""),
        ("auto", {"openai"}, "neither is installed"),  # auto never picks a remote server
    ],
)
def test_backend_problems(backend: str, installed: set[str], problem: str) -> None:
    found = backend_problem(backend, ["echo", "llamacpp", "mlx", "openai"], lambda module: module in installed)
    assert (problem in found) if problem else found == ""


def test_a_model_larger_than_the_board_is_refused_before_any_download() -> None:
    agent = DesiredAgent(agent_id="a", backend="llamacpp", model=MODEL)
    fits = desired_problems(state("n1", 1, agent), ["llamacpp"], lambda module: True, memory_bytes=8 * GIB)
    assert fits == []
    problems = desired_problems(state("n1", 1, agent), ["llamacpp"], lambda module: True, memory_bytes=2 * GIB)
    assert len(problems) == 1 and "too large" in problems[0]


def test_a_model_backend_without_a_model_file_is_refused() -> None:
    agent = DesiredAgent(agent_id="a", backend="llamacpp")
    assert "needs a model file" in desired_problems(state("n", 1, agent), ["llamacpp"], lambda m: True, GIB)[0]


def test_agents_travel_to_the_node_and_back_unchanged() -> None:
    config = AgentConfig(agent_id="n1-math", preset="math", backend="llamacpp", model="default", max_tokens=64)
    travelled = desired_agent(config, MODEL)
    assert travelled.settings == {"max_tokens": 64}
    back = agent_config(travelled, None)
    assert (back.agent_id, back.preset, back.backend, back.max_tokens) == ("n1-math", "math", "llamacpp", 64)


def test_only_nodes_whose_agents_differ_get_a_new_generation() -> None:
    echo = DesiredAgent(agent_id="a", backend="echo")
    llama = DesiredAgent(agent_id="a", backend="llamacpp", model=MODEL)
    current = {"n1": state("n1", 4, echo), "n2": state("n2", 2, echo)}
    found = changes({"n1": (echo,), "n2": (llama,), "n3": (llama,)}, current, "ops", now=1.0)
    assert [(c.node_id, c.new.generation) for c in found] == [("n2", 3), ("n3", 1)]
    assert found[0].previous == current["n2"] and found[1].previous is None


def test_a_rollback_brings_the_previous_agents_back_under_a_newer_generation() -> None:
    echo = DesiredAgent(agent_id="a", backend="echo")
    llama = DesiredAgent(agent_id="a", backend="llamacpp", model=MODEL)
    undo = rollback_of(Change("n1", state("n1", 4, echo), state("n1", 5, llama)), 5, "ops", now=2.0)
    assert undo is not None and undo.generation == 6 and undo.agents == (echo,)
    assert rollback_of(Change("n1", None, state("n1", 1, llama)), 1, "ops") is None  # clear: its config file


@pytest.mark.parametrize(
    ("fields", "converged", "why"),
    [
        ({"generation": 2, "desired_generation": 2}, True, ""),
        ({"generation": 1, "desired_generation": 2, "desired_error": "too large"}, False, "too large"),
        ({"generation": 1, "desired_generation": 2}, False, "applying"),
        ({"generation": 1, "desired_generation": 1}, False, "has not seen"),
    ],
)
def test_convergence_says_why(fields: dict[str, object], converged: bool, why: str) -> None:
    found = convergence("n1", state("n1", 2), beacon(**fields))
    assert found.converged is converged and why in found.why
    assert "never announced" in convergence("n1", state("n1", 2), None).why
    assert convergence("n1", state("n1", 2), beacon(status="offline", generation=2)).why == "offline"


def test_routers_send_nothing_to_a_draining_node_and_everything_again_once_back() -> None:
    registry = AgentRegistry()
    registry.apply_beacon(beacon(sent_at=1.0), now=0.0)
    assert [view.agent_id for view in registry.live_agents(0.0)] == ["n1-a"]
    registry.apply_beacon(beacon(status="draining", sent_at=2.0), now=1.0)
    assert list(registry.live_agents(1.0)) == []
    registry.apply_beacon(beacon(sent_at=3.0), now=2.0)
    assert [view.agent_id for view in registry.live_agents(2.0)] == ["n1-a"]


def test_peers_are_learned_from_beacons_and_the_node_itself_is_left_out() -> None:
    topics = Topics("f")
    directory = PeerDirectory("me")
    held = (MODEL,)
    directory.on_beacon(topics.beacon("p1"), beacon("p1", models=held, model_server="http://p1:8765"))
    directory.on_beacon(topics.beacon("me"), beacon("me", models=held, model_server="http://me:8765"))
    directory.on_beacon(topics.beacon("p2"), beacon("p2", models=(), model_server="http://p2:8765"))
    directory.on_beacon(topics.beacon("p3"), beacon("p1", models=held, model_server="http://liar:1"))
    assert directory.serving(MODEL.sha256) == ["http://p1:8765"]
    directory.on_beacon(topics.beacon("p1"), beacon("p1", status="offline", models=held, model_server="x"))
    assert directory.serving(MODEL.sha256) == []
