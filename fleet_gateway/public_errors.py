"""What an HTTP caller may read of a failure: the kind of failure and what to do, never the fabric's insides.

Exception text names files, hosts and broker URLs (`mqtt://user@10.0.0.2:1883`), and a router's
`internal_error` reply carries its exception; all of that stays in the operator's log. Messages that the router
writes for the caller (timeouts, no agents, and every 4xx: bad requests, busy, the router's caps) pass, with
anything that looks like an address cut.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from fleet_gateway.openai_api import error_body

log = logging.getLogger(__name__)

CALLER_CODES = frozenset({"timeout", "no_agents", "cancelled"})  # besides every code answered with a 4xx
MAX_MESSAGE_CHARS = 300
_ADDRESS = re.compile(r"[a-z][a-z0-9+.-]*://\S*|(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?|\[[0-9a-f:]+\](?::\d+)?", re.I)


def scrub(text: str) -> str:
    """`text` without URLs and IP addresses, cut to MAX_MESSAGE_CHARS."""
    return _ADDRESS.sub("<address>", text)[:MAX_MESSAGE_CHARS]


def fabric_failure(code: str, message: str, status: int) -> str:
    """The message of a fabric ErrorReply (answered with HTTP `status`) as a caller may see it.

    A 4xx reply is about the caller's own request or limits, so its text is for them; of the 5xx ones only the
    router's timeouts and "no agents" are; anything else (`internal_error`, codes we do not know) is hidden.
    """
    if status < 500 or code in CALLER_CODES:
        return scrub(message)
    log.warning("the fabric failed a task (%s): %s", code, message)
    return f"the fabric could not answer ({code}); the operator's logs have the details"


def invalid_options(error: ValueError) -> str:
    """Which option is invalid and why, without pydantic's echo of the input or its help links."""
    if isinstance(error, ValidationError) and error.errors():
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "options"
        return scrub(f"invalid options: {where}: {first.get('msg', 'invalid')}")
    return "invalid options"


def install_error_handlers(app: FastAPI) -> None:
    """A bug answers 500 in OpenAI's shape with no detail (the traceback goes to the log)."""

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
        return JSONResponse(error_body(500, "the gateway failed on this request", "internal_error"), 500)
