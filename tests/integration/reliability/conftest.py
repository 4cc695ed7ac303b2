"""Fixtures of the reliability suite (helpers live in `integration.reliability.fleet`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from integration.reliability.fleet import Fleet


@pytest.fixture
def fleet_factory(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[Callable[[str, list[str]], Fleet]]:
    """`fleet_factory(fabric, broker_urls)` -> Fleet; every process it starts is stopped after the test."""
    fleets: list[Fleet] = []

    def make(fabric: str, brokers: list[str]) -> Fleet:
        directory = tmp_path / f"fleet-{len(fleets)}"
        directory.mkdir()
        fleet = Fleet(directory, subprocess_env, fabric, brokers)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop_all()
