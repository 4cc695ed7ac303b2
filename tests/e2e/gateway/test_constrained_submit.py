"""`edge-agent submit --schema / --answer-type` and a plain MQTT client asking for a JSON answer, on a real fabric
(the gateway fabric: amqtt, echo agents, a SmolLM2 llama.cpp agent, a router), run as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from e2e.gateway.fleet import LLAMA_AGENT, GatewayFabric
from support import REPO

from shared.constraints import NUMBER_PATTERN

pytestmark = [pytest.mark.llamacpp, pytest.mark.slow]

CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}


def submit(fabric: GatewayFabric, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edge_agent.cli", "submit", "--broker", fabric.broker.url, "--fabric"]
    return subprocess.run(
        [*command, fabric.fabric, "--no-trace", "--timeout", "90", *arguments],
        env=fabric.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
    )


def test_submit_with_a_schema_prints_json_valid_against_it(gateway_fabric: GatewayFabric, tmp_path: Path) -> None:
    schema_file = tmp_path / "city.json"
    schema_file.write_text(json.dumps(CITY))
    done = submit(
        gateway_fabric,
        "Name a city and its country.",
        "--schema",
        str(schema_file),
        "--agent",
        LLAMA_AGENT,
        "--max-tokens",
        "96",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    jsonschema.validate(json.loads(answer["answer"]), CITY)


def test_submit_with_an_answer_type_ends_every_ballot_with_a_number(gateway_fabric: GatewayFabric) -> None:
    done = submit(
        gateway_fabric,
        "Tom has 3 apples and buys 4 more. How many apples?",
        "--answer-type",
        "number",
        "--agent",
        LLAMA_AGENT,
        "--max-tokens",
        "64",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert re.fullmatch(NUMBER_PATTERN, answer["answer"])
    assert answer["final_text"].endswith(f"Final answer: {answer['answer']}")


def test_a_voted_choice_compares_the_choices(gateway_fabric: GatewayFabric) -> None:
    done = submit(
        gateway_fabric, "Is 7 prime?", "--answer-type", "choice", "--choices", "yes,no", "--cot-count", "3", "--json"
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["answer"] in ("yes", "no")
    assert all(ballot["answer"] in ("yes", "no") for ballot in answer["subtasks"][0]["ballots"])


def test_submit_refuses_a_broken_schema_file(gateway_fabric: GatewayFabric, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    done = submit(gateway_fabric, "x", "--schema", str(broken))
    assert done.returncode == 2 and "--schema" in done.stderr


def test_a_plain_mqtt_client_asks_for_a_json_answer(gateway_fabric: GatewayFabric) -> None:
    """What the docs show: paho, a TaskRequest as JSON with options.output, the TaskAnswer on the reply topic."""
    prefix, client_id = f"symphony/{gateway_fabric.fabric}", f"plain-{uuid.uuid4().hex[:6]}"
    replies: list[dict[str, object]] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.on_message = lambda _client, _userdata, message: replies.append(json.loads(message.payload))
    host, port = gateway_fabric.broker.url.removeprefix("mqtt://").split(":")
    client.connect(host, int(port))
    client.subscribe(f"{prefix}/reply/{client_id}", qos=1)
    client.loop_start()
    try:
        task = {
            "kind": "task_request",
            "v": 1,
            "task_id": uuid.uuid4().hex,
            "query": "Name a city and its country.",
            "reply_topic": f"{prefix}/reply/{client_id}",
            "client_id": client_id,
            "options": {
                "agent_id": LLAMA_AGENT,
                "cot_count": 1,
                "max_tokens": 96,
                "output": {"type": "json_schema", "json_schema": CITY},
            },
        }
        client.publish(f"{prefix}/task/submit", json.dumps(task), qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 90
        while not replies and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        client.loop_stop()
        client.disconnect()
    (reply,) = replies
    assert reply["kind"] == "task_answer", reply
    jsonschema.validate(json.loads(str(reply["answer"])), CITY)
