"""Schemathesis against `edge-agent gateway` on a real fabric: broker, echo agents, router, gateway processes.

The in-process fuzzing (tests/integration/gateway/test_gateway_fuzz.py) covers the HTTP side over a fake fabric;
this run sends the generated requests through MQTT to a real router and real agents, with a key under quotas, so
every failure path of the fabric meets the fuzzer too: no 500, no hang, OpenAI's error shape, no internals.
A 5xx is allowed only as the fabric's documented answer (504 when a generated deadline of 15 ms passes, 503 when
no agent fits), never as a bug.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from e2e.gateway.fleet import GatewayFabric, echo
from hypothesis import HealthCheck, given, settings, strategies
from support import RunningBroker, amqtt_command, stop_processes

from broker.policy import free_port

KEY = "sk-symphony-fuzz-fabric-0123"
AGENTS = ("echo-a", "echo-b")
MODELS = ("symphony", "symphony-vote-3", *(f"agent:{agent}" for agent in AGENTS))
INTERNALS = ("mqtt://", "Traceback", "127.0.0.1:", "pydantic.dev", "Error:")
START_S = 60.0
EXAMPLES = 80
FABRIC_CODES = {"timeout", "no_agents", "no_router"}


@pytest.fixture(scope="module")
def echo_fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayFabric]:
    directory = tmp_path_factory.mktemp("fuzz-fabric")
    port = free_port()
    broker = RunningBroker("amqtt", port, amqtt_command(port))
    broker.start()
    env = dict(os.environ, SYMPHONY_EDGE_STATE_DIR=str(directory / "state"), PYTHONUNBUFFERED="1")
    fleet = GatewayFabric(broker, f"fuzz-{uuid.uuid4().hex[:8]}", directory, env)
    keys = directory / "api-keys.yaml"
    quota = "{concurrent_tasks: 4, max_cot_count: 3, max_deadline_s: 10}"
    keys.write_text(f"keys:\n  - key: {KEY}\n    client: fuzzer\n    quota: {quota}\n")
    try:
        fleet.node("echoes", [echo(agent) for agent in AGENTS])
        fleet.spawn("router", "router", "--broker", broker.url, "--fabric", fleet.fabric, "--router-id", "r1")
        gateway_port = free_port()
        fleet.gateway_url = f"http://127.0.0.1:{gateway_port}"
        fleet.spawn(
            "gateway", "gateway", "--broker", broker.url, "--fabric", fleet.fabric, "--port", str(gateway_port),
            "--keys-file", str(keys), "--max-body-bytes", str(256 * 1024),
        )  # fmt: skip
        _wait_for(fleet)
        yield fleet
    finally:
        stop_processes(reversed(list(fleet.processes.values())))
        broker.stop()


def _wait_for(fleet: GatewayFabric) -> None:
    deadline = time.monotonic() + START_S
    while True:
        try:
            health = fleet.health()
            if health["agents"] == len(AGENTS) and health["routers"] == 1:
                return
        except OSError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in fleet.processes.values()):
            pytest.fail(f"the fabric did not come up:\n{fleet.logs()}")
        time.sleep(0.2)


def fuzz_body(body: Any) -> Any:
    """Most generated bodies fail validation; half are steered past it, to a model and a question that exist."""
    if not isinstance(body, dict) or len(json.dumps(body, default=str)) % 2:
        return body
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    steered = {k: v for k, v in body.items() if k not in ("tools", "functions", "n")}
    steered["model"] = MODELS[len(messages) % len(MODELS)]
    steered["messages"] = [*messages[:2], {"role": "user", "content": "What is 6 * 7?"}]
    return steered


@pytest.mark.timeout(600)
def test_fuzzing_the_gateway_on_a_real_fabric_finds_no_server_error(echo_fabric: GatewayFabric) -> None:
    schema = schemathesis.openapi.from_url(echo_fabric.gateway_url + "/openapi.json")
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    statuses: list[int] = []

    @given(case=strategies.one_of(*(schema.as_strategy(mode) for mode in modes)))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def fuzz(case: Any) -> None:
        if case.body is not schemathesis.core.NOT_SET:
            case.body = fuzz_body(case.body)
        response = case.call(headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        statuses.append(response.status_code)
        if response.status_code >= 500:  # only the fabric's own documented answers, e.g. a 15 ms deadline passed
            assert json.loads(response.content)["error"]["code"] in FABRIC_CODES, response.text
        if response.status_code >= 400:
            error = json.loads(response.content)["error"]
            assert isinstance(error["message"], str) and error["type"], error
            assert not any(internal in response.text for internal in INTERNALS), response.text

    fuzz()
    assert 200 in statuses, f"no generated request reached the fabric: {sorted(set(statuses))}"
    assert all(process.poll() is None for process in echo_fabric.processes.values()), echo_fabric.logs()
