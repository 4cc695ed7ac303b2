"""The gateway's side of the fabric: who is live (a FabricWatcher) and one task client per client account."""

from __future__ import annotations

import asyncio

from pydantic import SecretStr

from fleet_observe.watch import FabricWatcher
from shared.client import FabricTaskClient
from shared.config import ConnectionSettings
from shared.http_auth import ClientAccount


class FabricGateway:
    """Tasks go out under the account of the caller's API key (anonymous callers use the gateway's own login)."""

    def __init__(self, connection: ConnectionSettings, deadline_s: float = 120.0) -> None:
        self.connection = connection
        self.deadline_s = deadline_s
        self.watcher = FabricWatcher(connection)
        self._clients: dict[str | None, FabricTaskClient] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect the watcher (raises TransportError when the broker is not there); task clients come on use."""
        await self.watcher.start()

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        await self.watcher.close()

    def live_agent_ids(self) -> set[str]:
        return {row.agent_id for row in self.watcher.snapshot.agent_rows() if row.online}

    def live_routers(self) -> int:
        return sum(row.online for row in self.watcher.snapshot.router_rows())

    async def client_for(self, account: ClientAccount | None) -> FabricTaskClient:
        """The connected task client of `account` (None: the gateway's own), created on first use."""
        name = None if account is None else account.client
        async with self._lock:
            client = self._clients.get(name)
            if client is None:
                connection = self.connection
                if account is not None:
                    password = None if account.password is None else SecretStr(account.password)
                    connection = connection.model_copy(update={"username": account.client, "password": password})
                client = FabricTaskClient(connection, client_id=name)
                await client.connect()
                self._clients[name] = client
            return client
