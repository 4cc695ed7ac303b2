"""A kit upgrade over the fabric with real parts: real wheels of the kit, real venvs, a real broker, real pip.

Each board runs the kit from its own venv, installed from a wheel built from this tree (version V); the new kit is
a wheel of a copy of the tree with the version bumped (V.post7). Each board's "service manager" does what the
role's units do on a board: it runs `edge-agent start` and starts it again when it exits non-zero
(`Restart=on-failure`), and runs `edge-agent kit-update` when the agent writes a request into its spool (the
`.path` unit starting the root oneshot). `edge-agent fleet apply --kit ... --rolling 1` upgrades the canary, which
fetches the wheel from the control node's model server, then the second board, which fetches it from the canary;
both come back reporting the new version. A broken wheel (pip cannot install it) fails the canary: the old kit
keeps serving with pip's reason in the beacon, the rollout is rolled back and exits non-zero. A kit that installs
but does not start is replaced by the updater with the kit that ran before, which says why.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from integration.fleet.fleetkit import FabricWatch, Processes, cli, write_node_config
from kit_wheels import build_kit_wheel
from support import RunningBroker, connection_for, stop_processes

from broker.policy import free_port
from edge_agent.cli.main import package_version
from edge_agent.runtime.kit import REQUEST_FILE, SPOOL_DIRECTORY

pytestmark = pytest.mark.slow
RESTART_S = 1.0  # the agent unit's RestartSec (5 s on a board)
START_TIMEOUT_S = 45  # how long the updater waits for a new kit to start (90 s on a board)


@dataclass(frozen=True)
class Kits:
    base: Path  # the wheel of this tree (what the boards run first)
    new: Path  # the same with its version bumped
    broken: Path  # named like a wheel of the kit, but not a wheel: pip cannot install it
    crashing: Path  # a wheel of the kit whose `edge-agent start` fails: the new kit does not start


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> Kits:
    out = tmp_path_factory.mktemp("kits")
    new_version = f"{package_version()}.post7"
    broken = out / "broken" / f"symphony_edge-{package_version()}.post8-py3-none-any.whl"
    broken.parent.mkdir()
    broken.write_bytes(b"not a zip file " * 100)
    crashing = build_kit_wheel(out, f"{package_version()}.post9", broken_start=True)
    return Kits(build_kit_wheel(out), build_kit_wheel(out, new_version), broken, crashing)


def make_venv(path: Path, wheel: Path) -> Path:
    """A venv with the kit installed from `wheel`; its other dependencies (and pip) come from the test's venv."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")  # appended: ours first
    install = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)]
    subprocess.run(install, check=True, timeout=300, env=_clean_env({}), cwd=path)
    return python


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """No PYTHONPATH: the board's venv, not this checkout, must provide the kit."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class Board:
    """A board's kit and the two units of the role, as a service manager runs them."""

    name: str
    python: Path
    config: Path
    spool: Path
    folder: Path
    fallback: Path
    agent: subprocess.Popen[bytes] | None = None
    updater: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    exited_at: float | None = None
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_agent(self) -> None:
        log = (self.folder / "agent.log").open("ab")
        command = [str(self.python), "-m", "edge_agent.cli", "-v", "start", "-c", str(self.config)]
        self.agent = subprocess.Popen(command, cwd=self.folder, env=_clean_env({}), stdout=log, stderr=log)
        self.others.append(self.agent)

    def tick(self) -> None:
        """One look: restart a failed agent (Restart=on-failure); start the updater for a request (the path unit)."""
        if self.agent is not None and self.agent.poll() not in (None, 0):
            self.exited_at = self.exited_at or time.monotonic()
            if time.monotonic() - self.exited_at >= RESTART_S:
                self.restarts, self.exited_at = self.restarts + 1, None
                self.start_agent()
        busy = self.updater is not None and self.updater.poll() is None
        if not busy and (self.spool / REQUEST_FILE).exists():
            log = (self.folder / "updater.log").open("ab")
            command = [str(self.python), "-m", "edge_agent.cli", "kit-update", "-c", str(self.config)]
            command += ["--keep-dir", str(self.folder / "kept"), "--fallback", str(self.fallback)]
            command += ["--start-timeout", str(START_TIMEOUT_S)]
            self.updater = subprocess.Popen(command, cwd=self.folder, env=_clean_env({}), stdout=log, stderr=log)
            self.others.append(self.updater)

    def logs(self) -> str:
        return "\n".join(
            f"--- {self.name} {name}\n{(self.folder / name).read_text()[-3000:]}"
            for name in ("agent.log", "updater.log")
            if (self.folder / name).exists()
        )


async def manage(boards: list[Board], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for board in boards:
            board.tick()
        await asyncio.sleep(0.2)


@pytest.fixture
def boards(tmp_path: Path, kits: Kits, amqtt_broker: RunningBroker, fabric: str) -> Iterator[list[Board]]:
    connection = connection_for(amqtt_broker, fabric)
    made = []
    for name in ("board-1", "board-2"):
        folder = tmp_path / name
        folder.mkdir()
        state = folder / "state"
        (state / SPOOL_DIRECTORY).mkdir(parents=True)  # the role creates it (the agent may write it)
        agents = [{"agent_id": f"{name}-math", "backend": "echo", "preset": "math"}]
        server = {"host": "127.0.0.1", "port": 0, "advertise": "127.0.0.1"}
        config = write_node_config(
            folder / "node.yaml", name, connection, agents=agents, state_dir=str(state), model_server=server
        )
        python = make_venv(folder / "venv", kits.base)
        made.append(Board(name, python, config, state / SPOOL_DIRECTORY, folder, kits.base))
    yield made
    stop_processes([process for board in made for process in board.others])


def test_a_kit_upgrade_spreads_from_peers_and_a_broken_wheel_is_rolled_back(
    amqtt_broker: RunningBroker,
    fabric: str,
    tmp_path: Path,
    kits: Kits,
    boards: list[Board],
    subprocess_env: dict[str, str],
) -> None:
    connection = connection_for(amqtt_broker, fabric)
    base, new = package_version(), f"{package_version()}.post7"
    processes = Processes(tmp_path, subprocess_env)
    processes.start("router", "router", "-b", amqtt_broker.url, "--fabric", fabric)
    served = tmp_path / "control"
    served.mkdir()
    shutil.copy(kits.new, served)
    shutil.copy(kits.broken, served)
    shutil.copy(kits.crashing, served)
    port = free_port()
    processes.start("control-server", "models", "serve", str(served), "--host", "127.0.0.1", "--port", str(port))
    (tmp_path / "inventory.ini").write_text("[boards]\nboard-1\nboard-2\n")
    fleet = {"fabric": fabric, "broker": {"hosts": ["board-1"]}, "agents": {"boards": [{"preset": "math"}]}}
    fleet["agents"]["boards"][0]["backend"] = "echo"
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump(fleet))
    apply = ["fleet", "apply", str(tmp_path / "fleet.yml"), "-b", amqtt_broker.url, "--fabric", fabric]
    apply += ["--model-source", f"http://127.0.0.1:{port}", "--rolling", "1", "--deadline", "120"]

    async def scenario() -> None:
        stop = asyncio.Event()
        for board in boards:
            board.start_agent()
        managing = asyncio.create_task(manage(boards, stop))
        watch = await FabricWatch(connection).open()
        try:
            await watch.until(lambda: {"board-1", "board-2"} <= set(watch.beacons), what="both boards online")
            assert {watch.beacons[b.name].software_version for b in boards} == {base}

            unserved = [word for word in apply if not word.startswith(("--model-source", "http://"))]
            result = await asyncio.to_thread(cli, subprocess_env, *unserved, "--kit", str(kits.new), timeout=120)
            assert result.returncode == 2 and "no node holds" in result.stderr, result.stdout + result.stderr

            started = time.monotonic()
            result = await asyncio.to_thread(cli, subprocess_env, *apply, "--kit", str(kits.new), timeout=400)
            assert result.returncode == 0, result.stdout + result.stderr
            await watch.until(
                lambda: all(watch.beacons[b.name].software_version == new for b in boards), what="the new kit"
            )
            print(f"\nkit upgrade {base} -> {new}, 2 boards, rolling 1 with probes: {time.monotonic() - started:.1f} s")
            print(result.stdout)
            for board in boards:
                beacon = watch.beacons[board.name]
                assert (beacon.status, beacon.desired_kit, beacon.desired_error) == ("online", new, "")
                assert beacon.generation == 1 and kits.new.name.replace(".whl", "") not in beacon.desired_error
            assert "(kit as installed -> " + new + ")" in result.stdout
            fetched = (boards[1].folder / "agent.log").read_text()
            assert re.search(r"fetched model symphony_edge-\S+ from http://127\.0\.0\.1:(\d+)", fetched), fetched
            source_port = int(
                re.findall(r"fetched model symphony_edge-\S+ from http://127\.0\.0\.1:(\d+)", fetched)[-1]
            )
            assert source_port != port  # board-2 took it from board-1, not from the control node

            # A wheel pip cannot install: the canary keeps the running kit and says why; the rollout is undone.
            result = await asyncio.to_thread(cli, subprocess_env, *apply, "--kit", str(kits.broken), timeout=400)
            assert result.returncode == 1, result.stdout + result.stderr
            assert "canary failed" in result.stderr and "pip could not install" in result.stderr, result.stderr
            assert "rolled back board-1 to generation 3" in result.stdout, result.stdout
            await watch.until(lambda: watch.beacons["board-1"].generation == 3, what="the canary rolled back")
            beacon = watch.beacons["board-1"]
            assert (beacon.software_version, beacon.status, beacon.desired_kit) == (new, "online", new)
            assert watch.beacons["board-2"].desired_generation == 1  # never touched

            # A new kit that does not start: the updater puts back the kit that ran, which says why.
            crashes = boards[0].restarts
            result = await asyncio.to_thread(cli, subprocess_env, *apply, "--kit", str(kits.crashing), timeout=400)
            assert result.returncode == 1, result.stdout + result.stderr
            assert f"the new kit {base}.post9 did not start within {START_TIMEOUT_S} s" in result.stderr, result.stderr
            assert f"reinstalled {kits.new.name}" in result.stderr, result.stderr
            await watch.until(lambda: watch.beacons["board-1"].generation == 5, what="the canary rolled back")
            beacon = watch.beacons["board-1"]
            assert (beacon.software_version, beacon.status) == (new, "online")
            assert boards[0].restarts >= crashes + 3  # into the new kit, its failures, back to the old one

            status = await asyncio.to_thread(
                cli, subprocess_env, "fleet", "status", "-b", amqtt_broker.url, "--fabric", fabric
            )
            assert status.returncode == 0 and re.search(rf"board-2\s+1\s+1\s+{re.escape(new)}\s", status.stdout)
        except BaseException:
            print(processes.logs() + "\n".join(board.logs() for board in boards))
            raise
        finally:
            stop.set()
            await managing
            await watch.close()
            processes.stop()

    asyncio.run(asyncio.wait_for(scenario(), 600))
