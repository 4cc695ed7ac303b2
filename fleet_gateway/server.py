"""Run the gateway: the fabric connections and uvicorn in one event loop, until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn

from fleet_gateway.app import create_app
from fleet_gateway.fabric import FabricGateway
from fleet_gateway.limits import GatewayLimits
from fleet_gateway.quotas import QuotaBook
from shared.config import ConnectionSettings
from shared.http_auth import Authenticator, load_keys

log = logging.getLogger(__name__)


class GatewayServer:
    """The gateway's HTTP server on `host:port` (port 0: any free port, read back from `port` once started)."""

    def __init__(
        self,
        connection: ConnectionSettings,
        host: str = "127.0.0.1",
        port: int = 8000,
        keys_file: Path | None = None,
        deadline_s: float = 120.0,
        limits: GatewayLimits | None = None,
    ) -> None:
        self.auth = Authenticator.for_host(host, load_keys(keys_file) if keys_file else None)
        self.gateway = FabricGateway(connection, deadline_s)
        self.quotas = QuotaBook()
        self.limits = limits or GatewayLimits()
        self.host, self.port = host, port
        app = create_app(self.gateway, self.auth, self.limits, self.quotas)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._serving: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        await self.gateway.start()
        self._serving = asyncio.create_task(self._server.serve(), name="gateway.http")
        while not self._server.started:
            if self._serving.done():  # uvicorn could not bind (it logs why) or failed to start
                await self.gateway.close()
                raise OSError(f"cannot serve the gateway on {self.host}:{self.port}")
            await asyncio.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._server.should_exit = True
        if self._serving is not None:
            with contextlib.suppress(asyncio.CancelledError, SystemExit):
                await self._serving
        await self.gateway.close()


@contextlib.asynccontextmanager
async def hosted_gateway(
    connection: ConnectionSettings, host: str, port: int, keys_file: Path | None = None
) -> AsyncIterator[GatewayServer]:
    """Run a gateway for the lifetime of the context (`edge-agent start --gateway`)."""
    server = GatewayServer(connection, host, port, keys_file)
    await server.start()
    try:
        yield server
    finally:
        await server.close()
