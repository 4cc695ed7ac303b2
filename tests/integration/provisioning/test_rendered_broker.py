"""`edge-agent broker --mosquitto` on the rendered (0600, in 0700 folders) password file and ACL, run as root.

mosquitto started as root drops to its own user, which cannot open files only root may read ("Unable to open
pwfile"); the command runs it as the owner of the password file instead (issue 16, part 4).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import REPO, RunningBroker, stop_processes, wait_for_port

from broker.mosquitto import find_mosquitto
from broker.policy import free_port
from provisioning.render import render
from shared.config import ConnectionSettings
from shared.errors import TransportError
from shared.mqtt import FabricClient, unique_client_id


def test_broker_mosquitto_as_root_reads_the_rendered_private_password_file(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs as root: the failure was mosquitto dropping root to its own user")
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    fleet = yaml.safe_load((REPO / "ansible" / "fleet.localhost.yml").read_text())
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump(fleet))
    out = tmp_path / "rendered"
    render(REPO / "ansible" / "inventory.localhost.ini", tmp_path / "fleet.yml", out)
    passwd, acl = out / "broker" / "passwd", out / "broker" / "acl"
    assert passwd.stat().st_mode & 0o777 == 0o600 and (out / "broker").stat().st_mode & 0o777 == 0o700
    password = yaml.safe_load((out / "secrets.yaml").read_text())["passwords"]["cli"]

    port = free_port()
    command = [sys.executable, "-m", "edge_agent.cli", "broker", "--mosquitto", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--password-file", str(passwd), "--acl-file", str(acl)], stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, process=process)
        broker = RunningBroker("mosquitto", port, [])

        async def connect(secret: str) -> bool:
            settings = ConnectionSettings(
                fabric="local", brokers=(broker.url,), username="cli", password=secret, connect_timeout_s=10
            )
            client = FabricClient(settings, unique_client_id("cli"))
            try:
                await client.connect(timeout=10)
            except TransportError:
                return False
            await client.close()
            return True

        assert asyncio.run(connect(password)), "the rendered account's password was refused"
        assert not asyncio.run(connect("not the password"))
    finally:
        stop_processes([process])
        if process.stderr is not None:
            errors = process.stderr.read().decode()
            process.stderr.close()
            assert "Unable to open pwfile" not in errors, errors
