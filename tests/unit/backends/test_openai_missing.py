"""Without the `openai` package (the extra `symphony-edge[openai]`) the openai backend says so when created."""

from __future__ import annotations

import sys

import pytest

from edge_agent.backends.base import BackendUnavailable
from edge_agent.backends.registry import create_backend


def test_the_openai_backend_without_its_package_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # `import openai` now raises ImportError
    with pytest.raises(BackendUnavailable, match=r"symphony-edge\[openai\]"):
        create_backend("openai", base_url="http://127.0.0.1:1/v1", model="m")
