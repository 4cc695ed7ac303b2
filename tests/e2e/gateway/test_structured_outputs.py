"""Structured outputs and tool calls through the gateway, against a real fabric (broker, router, echo agents and a
SmolLM2 llama.cpp agent), driven by the official `openai` client: `response_format` json_schema (strict), the
pydantic `parse` helper, tools with `tool_choice="required"` and a `role: tool` follow-up, plain and streamed, a
voted tool call, and the errors of what cannot be served. SmolLM2 decodes under the grammar of the schema, so
what it says is small-model content, but its shape is always valid."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from e2e.gateway.fleet import ECHO_AGENTS, LLAMA_AGENT, GatewayFabric
from pydantic import BaseModel

openai = pytest.importorskip("openai", reason="the openai client is not installed (dev extra)")

pytestmark = [pytest.mark.llamacpp, pytest.mark.slow]

LLAMA = f"agent:{LLAMA_AGENT}"
WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": WEATHER_PARAMETERS,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a timezone",
            "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
        },
    },
]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}


class City(BaseModel):
    name: str
    country: str
    population: int


def client(fabric: GatewayFabric) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{fabric.gateway_url}/v1", api_key="unused-on-loopback", max_retries=0)


def assert_valid_calls(calls: Any) -> None:
    assert calls
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_")
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_json_schema_strict_replies_validate(gateway_fabric: GatewayFabric) -> None:
    schema = City.model_json_schema()
    completion = client(gateway_fabric).chat.completions.create(
        model=LLAMA,
        messages=[{"role": "user", "content": "Describe Paris as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
        max_tokens=200,
        temperature=0.0,
    )
    jsonschema.validate(json.loads(completion.choices[0].message.content or ""), schema)


def test_json_object_replies_are_json_objects(gateway_fabric: GatewayFabric) -> None:
    completion = client(gateway_fabric).chat.completions.create(
        model=LLAMA,
        messages=[{"role": "user", "content": "Give a colour and its hex code in JSON."}],
        response_format={"type": "json_object"},
        max_tokens=200,
        temperature=0.0,
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


def test_the_pydantic_parse_helper_gets_a_model_instance(gateway_fabric: GatewayFabric) -> None:
    completion = client(gateway_fabric).beta.chat.completions.parse(
        model=LLAMA,
        messages=[{"role": "user", "content": "Describe Tokyo."}],
        response_format=City,
        max_tokens=200,
        temperature=0.0,
    )
    assert isinstance(completion.choices[0].message.parsed, City)


def test_required_tools_are_called_and_a_tool_result_gets_an_answer(gateway_fabric: GatewayFabric) -> None:
    openai_client = client(gateway_fabric)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    completion = openai_client.chat.completions.create(
        model=LLAMA, messages=messages, tools=TOOLS, tool_choice="required", max_tokens=200, temperature=0.0
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert_valid_calls(choice.message.tool_calls)
    messages.append(choice.message.model_dump(exclude_none=True))
    for call in choice.message.tool_calls or []:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21, "sky": "clear"}'})
    answer = openai_client.chat.completions.create(model=LLAMA, messages=messages, max_tokens=48)
    assert answer.choices[0].finish_reason in ("stop", "length") and answer.choices[0].message.content


def test_streamed_tool_calls_arrive_as_deltas(gateway_fabric: GatewayFabric) -> None:
    stream = client(gateway_fabric).chat.completions.create(
        model=LLAMA,
        messages=[{"role": "user", "content": "What time is it in Tokyo?"}],
        tools=TOOLS,
        tool_choice="required",
        max_tokens=200,
        temperature=0.0,
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finishes = []
    for chunk in stream:
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = delta.id or call["id"]
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
        finishes += [chunk.choices[0].finish_reason] if chunk.choices[0].finish_reason else []
    assert finishes == ["tool_calls"] and calls
    for call in calls.values():
        jsonschema.validate(json.loads(call["arguments"]), SCHEMAS[call["name"]])


def test_a_named_tool_choice_calls_that_function(gateway_fabric: GatewayFabric) -> None:
    completion = client(gateway_fabric).chat.completions.create(
        model=LLAMA,
        messages=[{"role": "user", "content": "Weather in Oslo, in celsius."}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        max_tokens=200,
        temperature=0.0,
    )
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert_valid_calls([call])


def test_a_voted_task_votes_on_the_tool_call(gateway_fabric: GatewayFabric) -> None:
    """Three echo agents call the same function with the same arguments: one canonical ballot wins."""
    completion = client(gateway_fabric).chat.completions.create(
        model="symphony-vote-3",
        messages=[{"role": "user", "content": "Paris"}],
        tools=TOOLS[:1],
        tool_choice="required",
        extra_body={"top_l": 3},
    )
    assert_valid_calls(completion.choices[0].message.tool_calls)
    ballots = completion.model_extra["symphony"]["subtasks"][0]["ballots"]  # type: ignore[index]
    assert len(ballots) >= 2 and len({json.dumps(json.loads(b["answer"]), sort_keys=True) for b in ballots}) == 1
    assert {b["agent_id"] for b in ballots} <= {*ECHO_AGENTS, LLAMA_AGENT}


def test_schemas_and_tool_choices_that_cannot_be_served_are_400s(gateway_fabric: GatewayFabric) -> None:
    openai_client = client(gateway_fabric)
    with pytest.raises(openai.BadRequestError, match="schema"):
        openai_client.chat.completions.create(
            model=LLAMA,
            messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 12}}},
        )
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        openai_client.chat.completions.create(
            model=LLAMA,
            messages=[{"role": "user", "content": "hi"}],
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "launch"}},
        )


def test_instructor_gets_a_structured_answer_from_the_gateway(gateway_fabric: GatewayFabric) -> None:
    instructor = pytest.importorskip("instructor", reason="instructor is not installed")
    patched = instructor.from_openai(client(gateway_fabric), mode=instructor.Mode.TOOLS)
    city = patched.chat.completions.create(
        model=LLAMA,
        response_model=City,
        messages=[{"role": "user", "content": "Describe Rome."}],
        max_retries=0,
        max_tokens=200,
        temperature=0.0,
    )
    assert isinstance(city, City)
    schema_mode = instructor.from_openai(client(gateway_fabric), mode=instructor.Mode.JSON_SCHEMA)
    assert isinstance(
        schema_mode.chat.completions.create(
            model=LLAMA,
            response_model=City,
            messages=[{"role": "user", "content": "Describe Lima."}],
            max_retries=0,
            max_tokens=200,
            temperature=0.0,
        ),
        City,
    )
