"""The dashboard's server (I/O): one MQTT watcher, a tiny HTTP server, JSON snapshots pushed by server-sent events.

    fabric ──MQTT──► FabricWatcher ──► SnapshotHub (version + condition) ──SSE──► every open page
    GET /             the page (dashboard.html)
    GET /snapshot     the current snapshot as JSON
    GET /events       text/event-stream: a snapshot at each change, and at least every KEEPALIVE_S

The page never speaks MQTT, so the broker needs no websocket listener and its credentials stay on the server.
On a non-loopback host every request must carry HTTP basic auth with the fabric's MQTT username and password.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import ipaddress
import json
import logging
import time
from importlib import resources

from edge_agent.observe.watch import FabricWatcher
from shared.config import ConnectionSettings
from shared.errors import ConfigError
from shared.topics import Topics

log = logging.getLogger(__name__)
KEEPALIVE_S = 2.0
COALESCE_S = 0.1
MAX_REQUEST_BYTES = 16 * 1024


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def basic_auth_ok(header: str | None, username: str, password: str) -> bool:
    """True when an `Authorization: Basic ...` header carries exactly these credentials."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(given.encode(), f"{username}:{password}".encode())


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


class SnapshotHub:
    """Wakes every event stream when the watcher's snapshot changed (coalescing bursts)."""

    def __init__(self, watcher: FabricWatcher) -> None:
        self.watcher = watcher
        self.version = 0
        self.condition = asyncio.Condition()

    def payload(self) -> bytes:
        data = {"fabric": self.watcher.topics.fabric, **self.watcher.snapshot.to_dict(time.time())}
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
    """Serves the page, the snapshot and the event stream for one fabric."""

    def __init__(self, connection: ConnectionSettings, host: str, port: int) -> None:
        self.credentials = required_credentials(host, connection)
        self.host, self.port = host, port
        self.watcher = FabricWatcher(connection, task_events=Topics(connection.fabric).all_task_events())
        self.hub = SnapshotHub(self.watcher)
        self.page = resources.files("edge_agent.observe").joinpath("dashboard.html").read_bytes()
        self._server: asyncio.Server | None = None
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.watcher.start()
        self._pump = asyncio.create_task(self.hub.pump(), name="dashboard.pump")
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._pump is not None:
            self._pump.cancel()
        await self.watcher.close()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, headers = await _read_request(reader)
            if self.credentials is not None and not basic_auth_ok(headers.get("authorization"), *self.credentials):
                await _respond(
                    writer, 401, b"login required\n", "text/plain", {"WWW-Authenticate": 'Basic realm="fabric"'}
                )
            elif method != "GET":
                await _respond(writer, 405, b"GET only\n", "text/plain")
            elif path == "/":
                await _respond(writer, 200, self.page, "text/html; charset=utf-8")
            elif path == "/snapshot":
                await _respond(writer, 200, self.hub.payload(), "application/json")
            elif path == "/events":
                await self._stream(writer)
            else:
                await _respond(writer, 404, b"not found\n", "text/plain")
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # a client that went away or sent garbage ends only its own connection
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode())
        version = self.hub.version
        while True:  # ends when the page goes away (the write raises ConnectionError)
            writer.write(b"data: " + self.hub.payload() + b"\n\n")
            await writer.drain()
            version = await self.hub.next_change(version, KEEPALIVE_S)


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
    if len(raw) > MAX_REQUEST_BYTES:
        raise ValueError("request head too large")
    lines = raw.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return method, target.split("?", 1)[0], headers


async def _respond(
    writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
) -> None:
    reasons = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
    headers = {
        "Content-Type": content_type,
        "Content-Length": str(len(body)),
        "Cache-Control": "no-store",
        "Connection": "close",
        **(extra or {}),
    }
    head = f"HTTP/1.1 {status} {reasons[status]}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
