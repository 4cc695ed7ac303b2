"""The gateway's HTTP routes (FastAPI): health, models, chat completions (JSON or server-sent events).

Every error leaves in OpenAI's shape with its status: 400 bad request, 401 no/invalid key, 404 unknown model,
413 body over the limit, 429 the agents are busy or the key is over a quota, 503 no live agent or router, 504 past
the deadline, 502 another fabric failure, 500 a bug. Keys, quotas, the Host rule and the body limit are checked
before the body is read (fleet_gateway.limits); error messages never carry exception text or broker addresses
(fleet_gateway.public_errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleet_gateway import openai_api as api
from fleet_gateway import quotas as quota_rules
from fleet_gateway import structured as structured_outputs
from fleet_gateway.fabric import FabricGateway
from fleet_gateway.limits import GatewayLimits, RequestGuard
from fleet_gateway.public_errors import fabric_failure, install_error_handlers, invalid_options
from fleet_gateway.quotas import CapExceeded, QuotaBook
from shared.client import TaskFailed, TaskTimeout
from shared.errors import SymphonyError, TransportError
from shared.http_auth import Authenticator, ClientAccount, Unauthorized
from shared.messages import TaskAnswer, TaskChunk

log = logging.getLogger(__name__)
Stream = AsyncIterator[TaskChunk | TaskAnswer]
DISCONNECT_POLL_S = 0.5


class GatewayError(SymphonyError):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def create_app(
    gateway: FabricGateway,
    auth: Authenticator,
    limits: GatewayLimits | None = None,
    quotas: QuotaBook | None = None,
) -> FastAPI:
    app = FastAPI(title="Symphony Edge: OpenAI-compatible gateway", docs_url=None, redoc_url=None)
    quotas = quotas if quotas is not None else QuotaBook()
    app.state.quotas = quotas
    _install_error_handlers(app)
    install_error_handlers(app)
    app.add_middleware(RequestGuard, auth=auth, quotas=quotas, limits=limits or GatewayLimits())

    def account(request: Request) -> ClientAccount | None:
        return auth.check(request.headers.get("authorization"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        agents, routers = len(gateway.live_agent_ids()), gateway.live_routers()
        return {"status": "ok" if agents and routers else "degraded", "agents": agents, "routers": routers}

    @app.get("/v1/models")
    async def models(_: ClientAccount | None = Depends(account)) -> dict[str, Any]:
        return api.models_list(sorted(gateway.live_agent_ids()), int(time.time()))

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, _: ClientAccount | None = Depends(account)) -> dict[str, Any]:
        api.model_options(model_id, gateway.live_agent_ids())  # UnknownModel → 404
        return {"id": model_id, "object": "model", "created": int(time.time()), "owned_by": api.OWNER}

    @app.get("/v1/usage")
    async def usage(caller: ClientAccount | None = Depends(account)) -> dict[str, Any]:
        """The caller's own key: requests, tokens, refusals, in flight, and its quotas."""
        return quota_rules.report(quotas.usage(caller), quotas.clock())

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        body: api.ChatCompletionRequest, http: Request, caller: ClientAccount | None = Depends(account)
    ) -> Any:
        live = gateway.live_agent_ids()
        query, context, options = api.task_of(body, live, gateway.deadline_s)
        try:
            options = quota_rules.cap_options(caller, options, gateway.deadline_s)
        except CapExceeded as error:
            quotas.refuse(caller, f"max_{error.param}")
            raise GatewayError(400, str(error), "quota_exceeded", error.param) from None
        structured = structured_outputs.structured_request(body)  # response_format, tools: a constraint
        if structured.constraint is not None:
            options["output"] = structured.constraint
        if structured.instructions:
            context = (*context, f"System: {structured.instructions}")
        if not live:
            raise GatewayError(503, "no live agent on the fabric: start one with `edge-agent start`", "no_agents")
        if not gateway.live_routers():
            raise GatewayError(503, "no router on the fabric: start one with `edge-agent router`", "no_router")
        client = await gateway.client_for(caller)
        try:
            task = client.request(query, context=context, stream=body.stream and not structured.calls_tools, **options)
        except ValueError as error:
            raise GatewayError(400, invalid_options(error), "invalid_options") from None
        stream: Stream = client.stream(task)

        def count(answer: TaskAnswer) -> None:
            quotas.record_tokens(caller, answer.prompt_tokens, answer.completion_tokens)

        if not body.stream:
            answer = await _answer(stream, http)
            count(answer)
            if structured.constraint is not None:
                return _structured_completion(answer, body, structured)
            return api.completion(answer, body.model, body.stops())
        first = await _first(stream)  # errors before the first token still get their HTTP status
        if structured.calls_tools:
            if isinstance(first, TaskAnswer):
                await stream.aclose()  # type: ignore[attr-defined]
            answer = first if isinstance(first, TaskAnswer) else await _answer(stream, http)
            count(answer)
            reply = _structured_reply(answer, structured)
            events = structured_outputs.tool_call_events(answer, reply, body.model, _include_usage(body))
            return EventSourceResponse(_sse(events), ping=15, headers={"Cache-Control": "no-store"})
        streamed = _events(first, stream, body, count)
        return EventSourceResponse(streamed, ping=15, headers={"Cache-Control": "no-store"})

    return app


def _structured_reply(answer: TaskAnswer, structured: structured_outputs.StructuredRequest) -> structured_outputs.Reply:
    try:
        text, cut_short = answer.final_text or answer.answer, answer.finish_reason == "length"
        return structured_outputs.reply_of(text, structured, answer.task_id, cut_short)
    except structured_outputs.InvalidReply as error:
        raise GatewayError(502, str(error), "invalid_model_output") from None


def _structured_completion(
    answer: TaskAnswer, body: api.ChatCompletionRequest, structured: structured_outputs.StructuredRequest
) -> dict[str, Any]:
    """The chat.completion of a JSON answer or of tool calls (stop sequences do not cut JSON)."""
    reply = _structured_reply(answer, structured)
    completion = api.completion(answer, body.model, [])
    choice = completion["choices"][0]
    choice["message"] = reply.message()
    choice["finish_reason"] = reply.finish_reason or choice["finish_reason"]
    return completion


def _include_usage(body: api.ChatCompletionRequest) -> bool:
    return body.stream_options is not None and body.stream_options.include_usage


async def _sse(events: list[str]) -> AsyncIterator[str]:
    for event in events:
        yield event


async def _answer(stream: Stream, http: Request) -> TaskAnswer:
    """The TaskAnswer of a non-streamed request; a caller that hangs up cancels the task (TaskCancel)."""

    async def consume() -> TaskAnswer:
        async for message in stream:
            if isinstance(message, TaskAnswer):
                return message
        raise GatewayError(502, "the fabric ended the task without an answer")

    waiting = asyncio.ensure_future(_fabric_errors(consume()))
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_S)
            if done:
                return waiting.result()
            if await http.is_disconnected():
                raise GatewayError(499, "the client went away")
    finally:
        waiting.cancel()  # a task still out is cancelled inside the stream, which sends the TaskCancel
        with contextlib.suppress(BaseException):
            await waiting
        await stream.aclose()  # type: ignore[attr-defined]


async def _first(stream: Stream) -> TaskChunk | TaskAnswer:
    try:
        return await _fabric_errors(stream.__anext__())
    except BaseException:
        await stream.aclose()  # type: ignore[attr-defined]
        raise


async def _fabric_errors(awaitable: Any) -> Any:
    """Turn the fabric's failures into GatewayErrors."""
    try:
        return await awaitable
    except TaskFailed as error:
        reply = error.reply
        status = api.fabric_error_status(reply.code)
        raise GatewayError(status, fabric_failure(reply.code, reply.message, status), reply.code) from None
    except TaskTimeout:
        raise GatewayError(504, "no answer from the fabric within the request's deadline", "timeout") from None


async def _events(
    first: TaskChunk | TaskAnswer,
    stream: Stream,
    body: api.ChatCompletionRequest,
    count: Callable[[TaskAnswer], None] = lambda _: None,
) -> AsyncIterator[str | ServerSentEvent]:
    """The SSE stream: role, content deltas (tokens, or the voted answer at once), finish, usage, [DONE]."""
    created = int(time.time())
    task_id = first.task_id
    scanner = api.StopScanner(body.stops())
    tokens_sent = False
    answer: TaskAnswer | None = None

    def content(text: str) -> str:
        return json.dumps(api.chunk(task_id, body.model, created, {"content": text}))

    try:
        yield json.dumps(api.chunk(task_id, body.model, created, {"role": "assistant", "content": ""}))
        message: TaskChunk | TaskAnswer = first
        while True:
            if isinstance(message, TaskAnswer):
                answer = message
                count(answer)
                if not tokens_sent and (text := scanner.feed(answer.final_text or answer.answer)):
                    yield content(text)
                if text := scanner.flush():
                    yield content(text)
                break
            if message.phase == "token":
                tokens_sent = True
                if text := scanner.feed(message.text):
                    yield content(text)
                if scanner.stopped:
                    break  # leaving the stream cancels the task: the agent stops generating
            else:
                yield ServerSentEvent(comment=f"progress: {message.text}")
            message = await _fabric_errors(stream.__anext__())
    except GatewayError as error:
        yield json.dumps(api.error_body(error.status, error.message, error.code))
        yield "[DONE]"
        return
    except TransportError as error:  # the broker went away mid-stream: the caller learns that, not where it was
        log.warning("the fabric became unreachable during a stream: %s", error)
        yield json.dumps(api.error_body(503, "lost the fabric during the stream", "fabric_unreachable"))
        yield "[DONE]"
        return
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    finish = "stop" if scanner.stopped or answer is None else answer.finish_reason
    extra = {"symphony": api.trace(answer)} if answer is not None else {}
    yield json.dumps(api.chunk(task_id, body.model, created, {}, finish, **extra))
    if body.stream_options is not None and body.stream_options.include_usage and answer is not None:
        yield json.dumps(api.chunk(task_id, body.model, created, None, usage=api.usage(answer)))
    yield "[DONE]"


def _install_error_handlers(app: FastAPI) -> None:
    def reply(status: int, message: str, code: str | None = None, param: str | None = None) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(api.error_body(status, message, code, param), status_code=status, headers=headers)

    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, error: GatewayError) -> JSONResponse:
        return reply(error.status, error.message, error.code, error.param)

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, error: Unauthorized) -> JSONResponse:
        return reply(401, str(error), "invalid_api_key")

    @app.exception_handler(api.UnknownModel)
    async def unknown_model(_: Request, error: api.UnknownModel) -> JSONResponse:
        return reply(404, str(error), "model_not_found", "model")

    @app.exception_handler(api.BadRequest)
    async def bad_request(_: Request, error: api.BadRequest) -> JSONResponse:
        return reply(400, str(error), "invalid_request", error.param)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(part) for part in first["loc"] if part != "body") or None
        return reply(400, f"{param or 'body'}: {first['msg']}", "invalid_request", param)

    @app.exception_handler(TransportError)
    async def unreachable(_: Request, error: TransportError) -> JSONResponse:
        log.warning("the fabric is unreachable: %s", error)  # the broker's address stays in the operator's log
        return reply(503, "cannot reach the fabric; try again later", "fabric_unreachable")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return reply(error.status_code, str(error.detail))
