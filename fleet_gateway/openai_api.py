"""The OpenAI chat completions API as pure functions: request → task options, answers and chunks → JSON.

Shapes follow OpenAI's API reference: `chat.completion`, `chat.completion.chunk` (the first delta carries the
role, the last one the finish_reason; with `stream_options.include_usage` one more chunk with empty choices
carries the usage), `list` of `model`, and errors as ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.errors import SymphonyError
from shared.messages import ErrorCode, TaskAnswer

BASE_MODEL = "symphony"
VOTE_VARIANTS = (1, 3, 5)
AGENT_PREFIX = "agent:"
_VOTE_MODEL = re.compile(rf"{BASE_MODEL}-vote-([1-9])")
OWNER = "symphony-edge"


class UnknownModel(SymphonyError):
    """The request names a model the gateway does not serve (404)."""


class BadRequest(SymphonyError):
    """The request is valid JSON but asks for something the fabric cannot do (400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str = ""


class FunctionCall(BaseModel):
    """A function call as OpenAI writes it: the arguments are a JSON text."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(default="{}", max_length=100_000)


class ToolCall(BaseModel):
    """One tool call of an assistant turn (`tool_calls` in a conversation sent back with the results)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(default="", max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCall


class InputMessage(BaseModel):
    """One turn of the conversation (`developer` is OpenAI's newer name for `system`; `tool` carries a tool's
    result for the call `tool_call_id`)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCall] | None = Field(default=None, max_length=64)
    tool_call_id: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=64)

    def text(self) -> str:
        if self.tool_calls:
            calls = "; ".join(f"{call.function.name}({call.function.arguments})" for call in self.tool_calls)
            return f"{self._content()} [called {calls}]".strip()
        return self._content()

    def _content(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        unsupported = sorted({part.type for part in self.content if part.type != "text"})
        if unsupported:
            raise BadRequest(f"content parts of type {', '.join(unsupported)} are not supported", "messages")
        return "".join(part.text for part in self.content)


FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=FUNCTION_NAME)
    description: str = Field(default="", max_length=4000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=FUNCTION_NAME)


class NamedToolChoice(BaseModel):
    """`tool_choice: {"type": "function", "function": {"name": ...}}`: that function must be called."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(default="response", max_length=64)
    description: str = Field(default="", max_length=4000)
    json_schema: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """`response_format`: plain text, any JSON object, or JSON that validates against a schema."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`: OpenAI's fields, plus Symphony's own options as extra body fields."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    messages: list[InputMessage] = Field(min_length=1, max_length=256)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1)
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    functions: list[Any] | None = None
    # Symphony's options (extra_body in the openai client)
    plan_k: int | None = Field(default=None, ge=1, le=8)
    plan_mode: Literal["decompose", "chains"] | None = None
    cot_count: int | None = Field(default=None, ge=1, le=9)
    top_l: int | None = Field(default=None, ge=1, le=16)
    selection: Literal["registry", "bid"] | None = None
    difficulty: Literal["simple", "hard"] | None = None
    deadline_s: float | None = Field(default=None, gt=0.0, le=3600.0)

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [s for s in ([self.stop] if isinstance(self.stop, str) else self.stop) if s]


def model_options(model: str, live_agent_ids: set[str]) -> dict[str, Any]:
    """The TaskOptions a model name stands for; UnknownModel for a name we do not serve."""
    if model == BASE_MODEL:
        return {}
    vote = _VOTE_MODEL.fullmatch(model)
    if vote:
        return {"cot_count": int(vote.group(1))}
    if model.startswith(AGENT_PREFIX):
        agent_id = model[len(AGENT_PREFIX) :]
        if agent_id not in live_agent_ids:
            raise UnknownModel(f"no live agent {agent_id!r} on the fabric (see GET /v1/models)")
        return {"agent_id": agent_id, "cot_count": 1, "plan_k": 1}
    raise UnknownModel(f"the model {model!r} does not exist; use {BASE_MODEL}, {BASE_MODEL}-vote-N or agent:<id>")


def task_of(
    request: ChatCompletionRequest, live_agent_ids: set[str], deadline_s: float
) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """(query, conversation context, TaskOptions fields) of a chat completion request."""
    if request.n != 1:
        raise BadRequest("only n = 1 is supported: the fabric votes its runs into one answer", "n")
    if request.functions:
        raise BadRequest("the legacy `functions` field is not supported; send `tools`", "functions")
    *earlier, last = request.messages
    if last.role == "tool":  # the results of the calls just made: answer the user's request with them
        earlier, query = request.messages, TOOL_RESULTS_QUERY
    elif last.role != "user":
        raise BadRequest("the last message must come from the user or a tool", "messages")
    else:
        query = last.text().strip()
    if not query:
        raise BadRequest("the last user message is empty", "messages")
    labels = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
    context = tuple(f"{labels[m.role]}: {m.text()}" for m in earlier if m.text().strip())
    options: dict[str, Any] = {"deadline_s": deadline_s, **model_options(request.model, live_agent_ids)}
    max_tokens = request.max_completion_tokens or request.max_tokens
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    if request.temperature is not None:
        options["temperature"] = request.temperature
    for name in ("plan_k", "plan_mode", "cot_count", "top_l", "selection", "difficulty", "deadline_s"):
        value = getattr(request, name)
        if value is not None and not (name in ("cot_count", "plan_k") and "agent_id" in options):
            options[name] = value
    return query, context, options


TOOL_RESULTS_QUERY = "Answer the user's last request using the tool results above."


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """`text` up to the first stop sequence (excluded), and whether one was found."""
    cut = min((index for index in (text.find(stop) for stop in stops) if index >= 0), default=-1)
    return (text, False) if cut < 0 else (text[:cut], True)


class StopScanner:
    """Applies stop sequences to streamed text: holds back a tail that might be the start of a stop sequence."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.hold = max((len(stop) for stop in stops), default=1) - 1
        self.buffer = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The text that may be sent now."""
        if self.stopped:
            return ""
        self.buffer += text
        head, found = cut_at_stop(self.buffer, self.stops)
        if found:
            self.stopped, self.buffer = True, ""
            return head
        ready = len(self.buffer) - self.hold
        if ready <= 0:
            return ""
        out, self.buffer = self.buffer[:ready], self.buffer[ready:]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out


# --- responses ------------------------------------------------------------------------------------------------


def usage(answer: TaskAnswer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def trace(answer: TaskAnswer) -> dict[str, Any]:
    """Symphony's own account of the task (an extra field): plan, votes per subtask, router, timing."""
    return {
        "task_id": answer.task_id,
        "router_id": answer.router_id,
        "answer": answer.answer,
        "plan": list(answer.plan),
        "subtasks": [subtask.model_dump() for subtask in answer.subtasks],
        "elapsed_ms": round(answer.elapsed_ms, 1),
    }


def completion(answer: TaskAnswer, model: str, stops: list[str], created: int | None = None) -> dict[str, Any]:
    """The `chat.completion` object of a voted answer."""
    text, stopped = cut_at_stop(answer.final_text or answer.answer, stops)
    return {
        "id": completion_id(answer.task_id),
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop" if stopped else answer.finish_reason,
            }
        ],
        "usage": usage(answer),
        "system_fingerprint": None,
        "symphony": trace(answer),
    }


def chunk(
    task_id: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One `chat.completion.chunk`; `delta` None gives the usage-only chunk (empty choices)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    return {
        "id": completion_id(task_id),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
        **extra,
    }


def completion_id(task_id: str) -> str:
    return f"chatcmpl-{task_id}"


def models_list(agent_ids: list[str], created: int) -> dict[str, Any]:
    names = [BASE_MODEL, *(f"{BASE_MODEL}-vote-{n}" for n in VOTE_VARIANTS)]
    names += [f"{AGENT_PREFIX}{agent_id}" for agent_id in sorted(agent_ids)]
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": created, "owned_by": OWNER} for n in names],
    }


ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout",
}


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "api_error"), "param": param, "code": code}}


FABRIC_ERROR_STATUS: dict[ErrorCode, int] = {"timeout": 504, "no_agents": 503, "busy": 429, "bad_request": 400}
FABRIC_ERROR_STATUS |= {"rate_limited": 429, "too_large": 400, "forbidden": 403}  # the router's tenancy caps


def fabric_error_status(code: ErrorCode) -> int:
    """The HTTP status of a fabric ErrorReply code (502 for the fabric's own failure, `internal_error`)."""
    return FABRIC_ERROR_STATUS.get(code, 502)
