"""The tenancy tests' fleet: broker, router and accounts provisioned as a real fleet would be, on both brokers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.security.tenancy_scene import BROKERS, secured_fleet
from secured import Fleet


@pytest.fixture(params=BROKERS)
def secured(request: pytest.FixtureRequest, tmp_path: Path, fabric: str) -> Iterator[Fleet]:
    yield from secured_fleet(request.param, tmp_path, fabric)
