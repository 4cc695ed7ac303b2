"""The router's periodic state save (issue 19 item 11): a snapshot taken on the loop, saves that survive a failure,
and a state file that cannot be read at start."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from router.service import RouterConfig, RouterService
from shared.config import ConnectionSettings


def service(state_file: Path, **config: object) -> RouterService:
    return RouterService(
        RouterConfig(router_id="r1", connection=ConnectionSettings(fabric="unit"), state_file=state_file, **config)
    )  # type: ignore[arg-type]


async def until(condition: object, timeout_s: float = 60.0) -> bool:
    """Wait (bounded) until `condition()` holds."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
    return True


def saved_arms(router: RouterService) -> int:
    path = router.config.state_file
    return len(json.loads(path.read_text())["policy"]["arms"]) if path is not None and path.exists() else 0


def test_saves_go_on_while_the_loop_learns_new_agents(tmp_path: Path) -> None:
    """Before: `to_dict` ran in a thread while the loop added arms ('dictionary changed size during iteration'),
    and the save task died with it: no save again for the life of the process."""
    router = service(tmp_path / "state.json", save_interval_s=0.001)
    x = np.ones(router.brain.policy.config.dimension)
    for number in range(2000):  # a fleet's worth of arms: a snapshot takes a while to walk
        router.brain.policy.update(f"agent-{number}", x, 1.0)

    async def scenario() -> int:
        saving = asyncio.create_task(router._save_forever())
        try:
            for number in range(2000, 4000):  # the loop keeps learning new agents while saves run
                router.brain.policy.update(f"agent-{number}", x, 1.0)
                if number % 20 == 0:
                    await asyncio.sleep(0)
                assert not saving.done(), saving.exception()
            await until(lambda: saved_arms(router) == 4000)
            return len(router.brain.policy.arms)
        finally:
            saving.cancel()

    assert asyncio.run(scenario()) == 4000


def test_a_failed_save_is_logged_and_the_next_one_still_runs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "state"
    router = service(blocker / "r1.linucb.json", save_interval_s=0.01)
    blocker.write_text("a file where the state folder should be")  # every save fails (NotADirectoryError)

    async def scenario() -> None:
        saving = asyncio.create_task(router._save_forever())
        try:
            await until(lambda: "could not save the router state" in caplog.text)
            assert not saving.done()
            blocker.unlink()  # the operator frees the path: the next save lands
            await until(lambda: (blocker / "r1.linucb.json").exists())
        finally:
            saving.cancel()

    with caplog.at_level(logging.WARNING, logger="router.service"):
        asyncio.run(scenario())
    assert str(blocker / "r1.linucb.json") in caplog.text


@pytest.mark.parametrize("content", [b"", b"{}", b'{"policy": '])
@pytest.mark.parametrize("policy", ["linucb", "cost_aware"])
def test_a_router_starts_fresh_on_an_empty_or_corrupt_state_file(
    tmp_path: Path, content: bytes, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: an empty file stopped the router with an unnamed JSONDecodeError, `{}` with a KeyError."""
    path = tmp_path / "r1.linucb.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="router.brain"):
        router = service(path, policy=policy)
    assert router.brain.policy.arms == []
    assert (router.brain.cost_policy is not None) == (policy == "cost_aware")
    (kept,) = tmp_path.glob("r1.linucb.json.corrupt-*")
    assert kept.read_bytes() == content
    assert str(path) in caplog.text
    router.save()
    assert json.loads(path.read_text())["policy"]["arms"] == {}
