"""Structured outputs and tool calls over the fabric: OpenAI's `response_format` and `tools` as output constraints.

    response_format json_object            -> JSON object constraint        -> message.content (JSON text)
    response_format json_schema (+strict)  -> the schema as the constraint  -> content, validated when strict
    tools + tool_choice auto               -> {"tool_calls": [...]} or {"content": "..."}
    tools + tool_choice required / named   -> {"tool_calls": [1..n calls]} (named: that function only)
    tools + tool_choice none               -> plain text (or the response_format)

A call is `{"name": <const>, "arguments": <the function's parameters schema>}`, so the agents' grammars allow
only real functions with valid arguments; `parallel_tool_calls: false` allows one call. The fabric votes on the
canonical JSON of the whole reply, so runs that call the same function with the same arguments agree whatever
their key order or spacing. `reply_of` turns the winning text back into OpenAI's message (tool call ids are
derived from the task id, stable across a replayed answer).

Errors: BadRequest (400, in OpenAI's shape) for a schema or tool choice that cannot be served; InvalidReply when
the fleet's answer does not validate (strict), which the app answers as an OpenAI-shaped 502.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from fleet_gateway.openai_api import BadRequest, ChatCompletionRequest, Tool, chunk, trace, usage
from shared.constraints import ConstraintError, canonical_json, check_schema, schema_violation
from shared.errors import SymphonyError
from shared.messages import OutputConstraint, TaskAnswer

MAX_PARALLEL_CALLS = 4
ANY_OBJECT: dict[str, Any] = {"type": "object"}
CONTENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"content": {"type": "string"}},
    "required": ["content"],
    "additionalProperties": False,
}


class InvalidReply(SymphonyError):
    """The fleet's answer does not satisfy the requested format (answered as a 502 in OpenAI's shape)."""


@dataclass(frozen=True)
class StructuredRequest:
    """What a chat completion asks beyond text: the constraint sent to the fabric and how to read the reply."""

    constraint: OutputConstraint | None = None
    tools: dict[str, Tool] = field(default_factory=dict)  # the callable ones, by name (empty: no tool calls)
    allow_content: bool = True  # tool_choice auto: the model may answer in words instead
    strict_schema: dict[str, Any] | None = None  # validate the content against it (json_schema with strict)
    instructions: str = ""  # told to the agents (the tools they may call), as a system turn of the context

    @property
    def calls_tools(self) -> bool:
        return bool(self.tools)


def structured_request(request: ChatCompletionRequest) -> StructuredRequest:
    """The StructuredRequest of a chat completion (BadRequest for what cannot be served)."""
    callable_tools = _callable_tools(request)
    if callable_tools:
        return _tool_request(request, callable_tools)
    return _format_request(request)


def _callable_tools(request: ChatCompletionRequest) -> dict[str, Tool]:
    tools = {tool.function.name: tool for tool in request.tools or ()}
    choice = request.tool_choice
    if choice is not None and not isinstance(choice, str):
        if choice.function.name not in tools:
            raise BadRequest(f"tool_choice names {choice.function.name!r}, which is not in tools", "tool_choice")
        return {choice.function.name: tools[choice.function.name]}
    if choice == "required" and not tools:
        raise BadRequest("tool_choice 'required' needs at least one tool", "tool_choice")
    return {} if choice == "none" else tools


def _tool_request(request: ChatCompletionRequest, tools: dict[str, Tool]) -> StructuredRequest:
    for name, tool in tools.items():
        _checked(tool.function.parameters or ANY_OBJECT, f"tools[{name}].function.parameters")
    calls = [_call_schema(tool) for tool in tools.values()]
    most = MAX_PARALLEL_CALLS if request.parallel_tool_calls is not False else 1
    items = calls[0] if len(calls) == 1 else {"anyOf": calls}
    with_calls = {
        "type": "object",
        "properties": {"tool_calls": {"type": "array", "items": items, "minItems": 1, "maxItems": most}},
        "required": ["tool_calls"],
        "additionalProperties": False,
    }
    allow_content = request.tool_choice in (None, "auto")
    schema = {"anyOf": [with_calls, CONTENT_SCHEMA]} if allow_content else with_calls
    return StructuredRequest(
        constraint=OutputConstraint(type="json_schema", json_schema=schema, name="tool_calls"),
        tools=tools,
        allow_content=allow_content,
        instructions=_tool_instructions(tools, allow_content),
    )


def _call_schema(tool: Tool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": tool.function.name}, "arguments": tool.function.parameters or ANY_OBJECT},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _tool_instructions(tools: dict[str, Tool], allow_content: bool) -> str:
    described = "; ".join(
        f"{name}({json.dumps((tool.function.parameters or {}).get('properties', {}))}): {tool.function.description}"
        for name, tool in tools.items()
    )
    ending = " or answer in words under 'content' when no tool helps" if allow_content else ""
    return f"Tools you can call: {described}. Reply in JSON: list the calls under 'tool_calls'{ending}."


def _format_request(request: ChatCompletionRequest) -> StructuredRequest:
    response_format = request.response_format
    if response_format is None or response_format.type == "text":
        return StructuredRequest()
    if response_format.type == "json_object":
        return StructuredRequest(OutputConstraint(type="json_schema", json_schema=ANY_OBJECT, name="json_object"))
    if response_format.json_schema is None:
        raise BadRequest("response_format json_schema needs its json_schema field", "response_format")
    spec = response_format.json_schema
    schema = _checked(spec.json_schema or ANY_OBJECT, "response_format.json_schema.schema")
    constraint = OutputConstraint(type="json_schema", json_schema=schema, name=spec.name[:64] or "response")
    return StructuredRequest(constraint, strict_schema=schema if spec.strict else None)


def _checked(schema: dict[str, Any], param: str) -> dict[str, Any]:
    try:
        check_schema(schema)
    except ConstraintError as error:
        raise BadRequest(f"{param}: {error}", param) from None
    return schema


# --- replies ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """The assistant message of a structured answer and its finish reason."""

    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finish_reason(self) -> str | None:
        return "tool_calls" if self.tool_calls else None

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content, "refusal": None}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message


def reply_of(text: str, structured: StructuredRequest, task_id: str, cut_short: bool = False) -> Reply:
    """Read the fleet's winning text as OpenAI's message; InvalidReply when it breaks the requested format.

    A reply cut short by max_tokens (`cut_short`) is returned as it is, with finish_reason "length", as OpenAI
    does: its JSON may be incomplete, and the client's `parse` helper raises its own LengthFinishReasonError."""
    if cut_short:
        return Reply(text)
    if not structured.calls_tools:
        if structured.strict_schema is not None:
            _validated(text, structured.strict_schema)
        return Reply(text)
    value = _validated(text, (structured.constraint.json_schema or {}) if structured.constraint else {})
    if "tool_calls" not in value:
        return Reply(str(value.get("content", "")))
    unique = {canonical_json(call): call for call in value["tool_calls"]}  # a small model repeats calls to fill a list
    calls = [_tool_call(call, index, task_id) for index, call in enumerate(unique.values())]
    return Reply(None, calls)


def _validated(text: str, schema: dict[str, Any]) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidReply(f"the fleet's answer is not JSON: {text[:200]!r}") from None
    problem = schema_violation(value, schema)
    if problem is not None:
        raise InvalidReply(f"the fleet's answer does not validate against the schema: {problem}")
    return value


def _tool_call(call: dict[str, Any], index: int, task_id: str) -> dict[str, Any]:
    digest = hashlib.sha256(f"{task_id}/{index}".encode()).hexdigest()[:24]
    arguments = json.dumps(call["arguments"], ensure_ascii=False)
    return {"id": f"call_{digest}", "type": "function", "function": {"name": call["name"], "arguments": arguments}}


def tool_call_deltas(reply: Reply) -> list[dict[str, Any]]:
    """The streamed `delta`s of a reply's tool calls: each call's id, type and name, then its arguments."""
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(reply.tool_calls):
        head = {"index": index, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"]}}
        deltas.append({"tool_calls": [{**head, "function": {**head["function"], "arguments": ""}}]})
        deltas.append({"tool_calls": [{"index": index, "function": {"arguments": call["function"]["arguments"]}}]})
    return deltas


def tool_call_events(answer: TaskAnswer, reply: Reply, model: str, include_usage: bool) -> list[str]:
    """The SSE data of a streamed answer that calls tools (or, under `auto`, answers in words)."""
    created = int(time.time())
    task_id = answer.task_id
    deltas = [{"role": "assistant", "content": None if reply.tool_calls else ""}]
    deltas += tool_call_deltas(reply) if reply.tool_calls else [{"content": reply.content or ""}]
    events = [json.dumps(chunk(task_id, model, created, delta)) for delta in deltas]
    finish = reply.finish_reason or answer.finish_reason
    events.append(json.dumps(chunk(task_id, model, created, {}, finish, symphony=trace(answer))))
    if include_usage:
        events.append(json.dumps(chunk(task_id, model, created, None, usage=usage(answer))))
    events.append("[DONE]")
    return events
