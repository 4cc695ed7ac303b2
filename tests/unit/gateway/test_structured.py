"""response_format and tools as output constraints, and the fleet's JSON back as OpenAI messages and deltas."""

from __future__ import annotations

import json

import pytest

from fleet_gateway.openai_api import BadRequest, ChatCompletionRequest, task_of
from fleet_gateway.structured import InvalidReply, reply_of, structured_request, tool_call_deltas
from shared.constraints import example_output, violation
from shared.messages import OutputConstraint

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "symphony", "messages": [{"role": "user", "content": "Weather in Paris?"}], **fields}
    )


def constraint_of(**fields: object) -> OutputConstraint:
    constraint = structured_request(chat(**fields)).constraint
    assert constraint is not None
    return constraint


def test_plain_requests_carry_no_constraint() -> None:
    assert structured_request(chat()).constraint is None
    assert structured_request(chat(response_format={"type": "text"})).constraint is None
    assert structured_request(chat(tools=[WEATHER], tool_choice="none")).constraint is None


def test_json_object_and_json_schema_become_schema_constraints() -> None:
    assert constraint_of(response_format={"type": "json_object"}).json_schema == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    request = structured_request(
        chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}})
    )
    assert request.constraint is not None and request.constraint.json_schema == schema
    assert request.strict_schema == schema


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}}, "schema"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_formats_the_fabric_cannot_serve_are_bad_requests(fields: dict[str, object], param: str) -> None:
    with pytest.raises(BadRequest) as raised:
        structured_request(chat(**fields))
    assert param in (raised.value.param or "")


def test_required_tools_allow_only_calls_of_real_functions_with_valid_arguments() -> None:
    constraint = constraint_of(tools=[WEATHER, TIME], tool_choice="required")
    good = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}'
    assert violation(good, constraint) is None
    for bad in (
        '{"tool_calls": [{"name": "get_weather", "arguments": {}}]}',
        '{"tool_calls": [{"name": "rm_rf", "arguments": {}}]}',
        '{"tool_calls": []}',
        '{"content": "It is sunny."}',
    ):
        assert violation(bad, constraint) is not None, bad


def test_auto_also_allows_an_answer_in_words_and_named_allows_that_function_only() -> None:
    assert violation('{"content": "hi"}', constraint_of(tools=[WEATHER])) is None
    named = constraint_of(tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert violation('{"tool_calls": [{"name": "get_time", "arguments": {}}]}', named) is None
    assert violation('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "x"}}]}', named) is not None


def test_parallel_tool_calls_false_allows_one_call() -> None:
    two = '{"tool_calls": [{"name": "get_time", "arguments": {}}, {"name": "get_time", "arguments": {}}]}'
    assert violation(two, constraint_of(tools=[TIME], tool_choice="required")) is None
    assert violation(two, constraint_of(tools=[TIME], tool_choice="required", parallel_tool_calls=False)) is not None


def test_a_valid_example_of_the_tool_schema_reads_back_as_openai_tool_calls() -> None:
    request = structured_request(chat(tools=[WEATHER], tool_choice="required"))
    assert request.constraint is not None
    reply = reply_of(example_output(request.constraint, fill="Paris"), request, "task-1")
    (call,) = reply.tool_calls
    assert reply.content is None and reply.finish_reason == "tool_calls"
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    deltas = tool_call_deltas(reply)
    assert deltas[0]["tool_calls"][0]["id"] == call["id"] and deltas[1]["tool_calls"][0]["function"]["arguments"]


def test_words_under_auto_are_the_message_content() -> None:
    request = structured_request(chat(tools=[WEATHER]))
    reply = reply_of('{"content": "No tool needed."}', request, "t")
    assert (reply.content, reply.tool_calls, reply.finish_reason) == ("No tool needed.", [], None)


def test_strict_replies_that_do_not_validate_are_refused() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    request = structured_request(
        chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}})
    )
    assert reply_of('{"a": 1}', request, "t").content == '{"a": 1}'
    with pytest.raises(InvalidReply):
        reply_of('{"a": "one"}', request, "t")
    with pytest.raises(InvalidReply):
        reply_of("not json", request, "t")


def test_a_tool_result_turn_is_accepted_and_asks_for_the_answer() -> None:
    request = chat(
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21}'},
        ],
    )
    query, context, _ = task_of(request, set(), 60.0)
    assert "tool results" in query
    assert context == (
        "User: Weather in Paris?",
        'Assistant: [called get_weather({"city":"Paris"})]',
        'Tool: {"temperature": 21}',
    )


def test_repeated_identical_calls_are_one_call() -> None:
    request = structured_request(chat(tools=[WEATHER, TIME], tool_choice="required"))
    twice = '{"tool_calls": [{"name": "get_time", "arguments": {}}, {"arguments": {}, "name": "get_time"}]}'
    assert [call["function"]["name"] for call in reply_of(twice, request, "t").tool_calls] == ["get_time"]
