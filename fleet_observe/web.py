"""The dashboard's server (I/O): one MQTT watcher, FastAPI on uvicorn, JSON snapshots pushed by server-sent events.

    fabric ──MQTT──► FabricWatcher ──► SnapshotHub (version + condition) ──SSE──► every open page
    GET /             the page (dashboard.html)
    GET /snapshot     the current snapshot as JSON
    GET /events       text/event-stream: a snapshot at each change, and at least every KEEPALIVE_S

The page never speaks MQTT, so the broker needs no websocket listener and its credentials stay on the server.
Who sees what (the same check as the gateway, shared.http_auth):

    operator view  every client's tasks, the fleet, the router's scores: the fabric's MQTT login (basic auth), or
                   anyone on loopback when neither a login nor a keys file is configured
    client view    that account's own tasks and traces only: one of the gateway's API keys (--keys-file), as a
                   bearer token or as a basic-auth login (client account name, API key as the password)

Served anonymously on loopback, only requests addressed to a loopback name are answered (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from sse_starlette.sse import EventSourceResponse

from fleet_observe.watch import FabricWatcher
from shared.config import ConnectionSettings
from shared.errors import ConfigError, SymphonyError
from shared.http_auth import Authenticator, ClientAccount, Unauthorized, host_allowed
from shared.network import is_loopback
from shared.topics import Topics

log = logging.getLogger(__name__)
KEEPALIVE_S = 2.0
COALESCE_S = 0.1


def basic_auth_ok(header: str | None, username: str, password: str) -> bool:
    """True when an `Authorization: Basic ...` header carries exactly these credentials."""
    try:
        Authenticator(login=(username, password)).check(header)
    except Unauthorized:
        return False
    return True


def required_credentials(host: str, connection: ConnectionSettings) -> tuple[str, str] | None:
    """None on loopback; the MQTT credentials elsewhere (a ConfigError when there are none)."""
    if is_loopback(host):
        return None
    if not connection.username or connection.password is None:
        raise ConfigError(
            f"serving the dashboard on {host} exposes the fabric: set connection.username/password (they become "
            "the dashboard's basic-auth login), or keep the default --host 127.0.0.1"
        )
    return connection.username, connection.password.get_secret_value()


def _login(connection: ConnectionSettings) -> tuple[str, str] | None:
    if not connection.username or connection.password is None:
        return None
    return connection.username, connection.password.get_secret_value()


class ForeignHost(SymphonyError):
    """A request to an anonymous loopback dashboard under another host name (DNS rebinding): 400."""


class SnapshotHub:
    """Wakes every event stream when the watcher's snapshot changed (coalescing bursts)."""

    def __init__(self, watcher: FabricWatcher) -> None:
        self.watcher = watcher
        self.version = 0
        self.condition = asyncio.Condition()

    def payload(self, client: str | None = None) -> bytes:
        """The operator's snapshot, or (with `client`) that client account's own view."""
        snapshot = self.watcher.snapshot
        view = snapshot.to_dict(time.time()) if client is None else snapshot.client_view(client, time.time())
        data = {"fabric": self.watcher.topics.fabric, "view": "operator", **view}
        return json.dumps(data, default=str).encode()

    async def pump(self) -> None:
        while True:
            await self.watcher.changed.wait()
            await asyncio.sleep(COALESCE_S)
            self.watcher.changed.clear()
            self.version += 1
            async with self.condition:
                self.condition.notify_all()

    async def next_change(self, seen: int, timeout_s: float) -> int:
        async with self.condition:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.condition.wait_for(lambda: self.version != seen), timeout_s)
        return self.version


class DashboardServer:
    """Serves the page, the snapshot and the event stream for one fabric (FastAPI on uvicorn)."""

    def __init__(
        self,
        connection: ConnectionSettings,
        host: str,
        port: int,
        api_keys: dict[str, Any] | None = None,
        allowed_hosts: frozenset[str] = frozenset(),
        full_traces: bool = True,
    ) -> None:
        self.api_keys = api_keys or {}
        self.allowed_hosts = allowed_hosts
        self.credentials = _login(connection) if self.api_keys else required_credentials(host, connection)
        self.host, self.port = host, port
        all_events = Topics(connection.fabric).all_task_events()
        self.watcher = FabricWatcher(connection, task_events=all_events, full_traces=full_traces)
        self.hub = SnapshotHub(self.watcher)
        self.page = resources.files("fleet_observe").joinpath("dashboard.html").read_bytes()
        self._pump: asyncio.Task[None] | None = None
        self._server: Any = None
        self._serving: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.watcher.start()
        self._pump = asyncio.create_task(self.hub.pump(), name="dashboard.pump")
        config = uvicorn.Config(
            self.app(), host=self.host, port=self.port, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._serving = asyncio.create_task(self._server.serve(), name="dashboard.http")
        while not self._server.started:
            if self._serving.done():
                raise OSError(f"cannot serve the dashboard on {self.host}:{self.port}")
            await asyncio.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._serving is not None:
            with contextlib.suppress(asyncio.CancelledError, SystemExit):
                await self._serving
        if self._pump is not None:
            self._pump.cancel()
        await self.watcher.close()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def app(self) -> FastAPI:
        """The routes: the page, the snapshot, the event stream; each behind the gateway's authentication."""
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        headers = {"Cache-Control": "no-store"}

        def login(request: Request) -> str | None:
            """The client account whose view the caller gets (None: the operator's); raises Unauthorized."""
            auth = Authenticator(self.api_keys, self.credentials)
            if auth.anonymous and not host_allowed(request.headers.get("host"), self.allowed_hosts):
                raise ForeignHost()
            account: ClientAccount | None = auth.check(request.headers.get("authorization"))
            return None if account is None else account.client

        @app.exception_handler(Unauthorized)
        async def unauthorized(_: Request, error: Unauthorized) -> Response:
            challenge = {"WWW-Authenticate": 'Basic realm="fabric"'}
            return PlainTextResponse("login required\n", status_code=401, headers={**headers, **challenge})

        @app.exception_handler(ForeignHost)
        async def foreign_host(_: Request, error: ForeignHost) -> Response:
            return PlainTextResponse("this dashboard answers only requests addressed to localhost\n", status_code=400)

        @app.get("/", dependencies=[Depends(login)])
        async def page() -> Response:
            return Response(self.page, media_type="text/html; charset=utf-8", headers=headers)

        @app.get("/snapshot")
        async def snapshot(client: str | None = Depends(login)) -> Response:
            return Response(self.hub.payload(client), media_type="application/json", headers=headers)

        @app.get("/events")
        async def events(client: str | None = Depends(login)) -> EventSourceResponse:
            return EventSourceResponse(self._stream(client), headers=headers, sep="\n")

        return app

    async def _stream(self, client: str | None = None) -> AsyncIterator[str]:
        """A snapshot now, then at each change and at least every KEEPALIVE_S (ends when the page goes away)."""
        version = self.hub.version
        while True:
            yield self.hub.payload(client).decode()
            version = await self.hub.next_change(version, KEEPALIVE_S)
