"""The gateway against a real fabric, driven by the official `openai` client (sync, async, streaming) and curl.

Echo agents answer `echo: <the user message as the agent saw it>` and `Final answer: 42`, so what a test reads
back shows what crossed the fabric; the llama.cpp agent (SmolLM2) shows real token streaming.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e.gateway.fleet import ECHO_AGENTS, LLAMA_AGENT, SLOW_AGENT, GatewayFabric
from support import stop_processes

from broker.policy import free_port
from fleet_observe.watch import FabricWatcher
from shared.config import ConnectionSettings

openai = pytest.importorskip("openai", reason="the openai client is not installed (dev extra)")

pytestmark = [pytest.mark.llamacpp, pytest.mark.slow]


def client(fabric: GatewayFabric) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{fabric.gateway_url}/v1", api_key="unused-on-loopback", max_retries=0)


def test_models_list_the_pipeline_its_variants_and_every_live_agent(gateway_fabric: GatewayFabric) -> None:
    names = [model.id for model in client(gateway_fabric).models.list()]
    assert names[:4] == ["symphony", "symphony-vote-1", "symphony-vote-3", "symphony-vote-5"]
    assert sorted(names[4:]) == sorted(f"agent:{a}" for a in (*ECHO_AGENTS, SLOW_AGENT, LLAMA_AGENT))


def test_the_sync_client_gets_the_voted_answer_with_usage_and_trace(gateway_fabric: GatewayFabric) -> None:
    completion = client(gateway_fabric).chat.completions.create(
        model="symphony-vote-3",
        messages=[{"role": "user", "content": "What is six times seven?"}],
        extra_body={"top_l": 3},
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    trace = completion.model_extra["symphony"]  # type: ignore[index]
    assert trace["answer"] == "42" and len(trace["subtasks"][0]["ballots"]) >= 2
    assert choice.message.content is not None and "Final answer: 42" in choice.message.content


def test_the_async_client_carries_the_conversation_to_the_agent(gateway_fabric: GatewayFabric) -> None:
    async def ask() -> openai.types.chat.ChatCompletion:
        async with openai.AsyncOpenAI(base_url=f"{gateway_fabric.gateway_url}/v1", api_key="x") as async_client:
            return await async_client.chat.completions.create(
                model=f"agent:{ECHO_AGENTS[0]}",
                messages=[
                    {"role": "system", "content": "Be terse."},
                    {"role": "user", "content": "My name is Ann."},
                    {"role": "assistant", "content": "Hello Ann."},
                    {"role": "user", "content": "What is my name?"},
                ],
            )

    completion = asyncio.run(ask())
    content = completion.choices[0].message.content or ""
    # the echo agent repeats its user message: the earlier turns came as context, then the task
    for turn in ("System: Be terse.", "User: My name is Ann.", "Assistant: Hello Ann.", "Task: What is my name?"):
        assert turn in content
    assert completion.model_extra["symphony"]["subtasks"][0]["ballots"][0]["agent_id"] == ECHO_AGENTS[0]  # type: ignore[index]


def test_a_llama_agent_streams_token_by_token_with_usage_last(gateway_fabric: GatewayFabric) -> None:
    stream = client(gateway_fabric).chat.completions.create(
        model=f"agent:{LLAMA_AGENT}",
        messages=[{"role": "user", "content": "Name three colours."}],
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(contents) > 3  # tokens arrived one (or a few) at a time, not as one block
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    assert not chunks[-1].choices and chunks[-1].usage is not None
    assert 0 < chunks[-1].usage.completion_tokens <= 24


def test_max_tokens_cuts_the_reply_and_says_length(gateway_fabric: GatewayFabric) -> None:
    completion = client(gateway_fabric).chat.completions.create(
        model=f"agent:{LLAMA_AGENT}", messages=[{"role": "user", "content": "Tell me a long story."}], max_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


def test_a_streamed_vote_sends_the_voted_answer(gateway_fabric: GatewayFabric) -> None:
    stream = client(gateway_fabric).chat.completions.create(
        model="symphony-vote-3", messages=[{"role": "user", "content": "What is six times seven?"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "Final answer: 42" in text


def test_stop_sequences_end_the_text_before_them(gateway_fabric: GatewayFabric) -> None:
    openai_client = client(gateway_fabric)
    request = {
        "model": f"agent:{ECHO_AGENTS[1]}",
        "messages": [{"role": "user", "content": "alpha beta gamma"}],
        "stop": ["gamma"],
    }
    completion = openai_client.chat.completions.create(**request)  # type: ignore[call-overload]
    assert completion.choices[0].message.content.endswith("beta ")
    assert completion.choices[0].finish_reason == "stop"
    chunks = openai_client.chat.completions.create(**request, stream=True)  # type: ignore[call-overload]
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == completion.choices[0].message.content


def test_errors_come_in_openai_shape_with_their_status(gateway_fabric: GatewayFabric) -> None:
    openai_client = client(gateway_fabric)
    with pytest.raises(openai.NotFoundError, match="no-such-model"):
        openai_client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError, match="nobody"):
        openai_client.chat.completions.create(model="agent:nobody", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="last message"):
        openai_client.chat.completions.create(model="symphony", messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        openai_client.chat.completions.create(
            model="symphony", messages=[{"role": "user", "content": "hi"}], temperature=7
        )
    with pytest.raises(openai.APIStatusError) as timed_out:
        openai_client.chat.completions.create(
            model=f"agent:{SLOW_AGENT}", messages=[{"role": "user", "content": "hi"}], extra_body={"deadline_s": 1}
        )
    assert timed_out.value.status_code == 504
    assert timed_out.value.body["code"] == "timeout"  # type: ignore[index]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_gets_json_and_an_event_stream(gateway_fabric: GatewayFabric) -> None:
    body = {"model": "symphony", "messages": [{"role": "user", "content": "What is six times seven?"}]}
    url = f"{gateway_fabric.gateway_url}/v1/chat/completions"
    command = ["curl", "-sS", "--max-time", "60", url, "-H", "Content-Type: application/json"]
    plain = subprocess.run([*command, "-d", json.dumps(body)], capture_output=True, text=True, check=True)
    assert json.loads(plain.stdout)["object"] == "chat.completion"
    streamed = subprocess.run(
        [*command, "-N", "-d", json.dumps({**body, "stream": True})], capture_output=True, text=True, check=True
    )
    events = [line[6:] for line in streamed.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert {json.loads(event)["object"] for event in events[:-1]} == {"chat.completion.chunk"}
    health = subprocess.run(["curl", "-sS", f"{gateway_fabric.gateway_url}/health"], capture_output=True, text=True)
    assert json.loads(health.stdout)["status"] == "ok"


def test_submit_stream_prints_the_tokens_then_the_answer(gateway_fabric: GatewayFabric) -> None:
    command = [sys.executable, "-m", "edge_agent.cli", "submit", "six times seven", "--stream", "--no-trace"]
    command += ["--broker", gateway_fabric.broker.url, "--fabric", gateway_fabric.fabric, "--agent", ECHO_AGENTS[2]]
    done = subprocess.run(command, env=gateway_fabric.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("echo: ") and "Final answer: 42\n" in done.stdout
    assert "answer: 42" in done.stdout.splitlines()[-2]


def test_submit_against_a_port_where_nothing_listens_fails_at_once_saying_what_to_do() -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "edge_agent.cli", "submit", "hi", "--broker", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=8)  # the MQTT connect timeout is 10 s
    assert done.returncode == 1
    assert url in done.stderr and "connection refused" in done.stderr and "edge-agent broker" in done.stderr


def test_a_client_that_closes_its_stream_stops_the_agent(gateway_fabric: GatewayFabric) -> None:
    """The slow echo agent would write for 30 s; closing the HTTP stream cancels the task and frees its slot."""
    question = " ".join(f"word{index}" for index in range(60))
    stream = client(gateway_fabric).chat.completions.create(
        model=f"agent:{SLOW_AGENT}", messages=[{"role": "user", "content": question}], stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()
    assert asyncio.run(asyncio.wait_for(slow_agent_idle(gateway_fabric), 20))  # far sooner than the 30 s reply


async def slow_agent_idle(fabric: GatewayFabric) -> bool:
    """Wait until the node's state says the slow agent runs nothing (states come at least every second)."""
    watcher = FabricWatcher(ConnectionSettings(fabric=fabric.fabric, brokers=(fabric.broker.url,)))
    await watcher.start()
    try:
        while True:
            rows = [row for row in watcher.snapshot.agent_rows() if row.agent_id == SLOW_AGENT]
            if rows and rows[0].in_flight == 0 and rows[0].last_seen > time.time() - 1:
                return True
            await asyncio.sleep(0.1)
    finally:
        await watcher.close()


def test_start_gateway_serves_the_api_from_a_node(tmp_path: Path) -> None:
    """`edge-agent start --host-broker --router --gateway`: one process, a whole fabric behind the OpenAI API."""
    broker_port, gateway_port = free_port(), free_port()
    command = [sys.executable, "-m", "edge_agent.cli", "start", "--host-broker", "--router", "--gateway"]
    command += ["--broker", f"mqtt://127.0.0.1:{broker_port}", "--backend", "echo", "--node-id", "solo"]
    command += ["--gateway-port", str(gateway_port)]
    log = tmp_path / "start.log"
    env = dict(os.environ, SYMPHONY_EDGE_STATE_DIR=str(tmp_path / "state"))
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=sink, env=env)
    try:
        deadline = time.monotonic() + 60
        while "OpenAI-compatible gateway hosted" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        openai_client = openai.OpenAI(base_url=f"http://127.0.0.1:{gateway_port}/v1", api_key="x", max_retries=0)
        answer = None
        while answer is None:  # the router may need a moment to see the node's beacon
            try:
                answer = openai_client.chat.completions.create(
                    model="symphony", messages=[{"role": "user", "content": "hello"}]
                )
            except openai.APIStatusError as error:
                assert error.status_code == 503 and time.monotonic() < deadline, error
                time.sleep(0.2)
        assert (answer.choices[0].message.content or "").startswith("echo: ")
        assert "agent:solo-agent" in [model.id for model in openai_client.models.list()]
    finally:
        stop_processes([process])
