"""Pulling a model by URL from a loopback HTTP server: progress, atomic placement, validation."""

from __future__ import annotations

import functools
import http.server
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import http_server

from model_store import CorruptModel, ModelError, pull_model, resolve_model

GGUF_BYTES = b"GGUF" + (3).to_bytes(4, "little") + bytes(16) + b"\x01" * 3_000_000


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    served = tmp_path / "served"
    served.mkdir()
    (served / "tiny.gguf").write_bytes(GGUF_BYTES)
    (served / "fake.gguf").write_bytes(b"<html>login page</html>" * 10)
    with http_server(functools.partial(QuietHandler, directory=str(served))) as url:
        yield url


def test_pull_by_url_reports_progress_and_lands_in_the_models_dir(file_server: str, tmp_path: Path) -> None:
    destination = tmp_path / "models"
    reports: list[tuple[int, int | None]] = []
    path = pull_model(
        f"{file_server}/tiny.gguf", destination, progress=lambda done, total: reports.append((done, total))
    )
    assert path == destination / "tiny.gguf"
    assert path.read_bytes() == GGUF_BYTES
    assert reports[-1] == (len(GGUF_BYTES), len(GGUF_BYTES))
    assert len(reports) > 1  # several chunks, so a progress bar moves
    assert resolve_model("tiny", destination) == path
    assert [entry.name for entry in destination.iterdir()] == ["tiny.gguf"]  # no temporary file left


def test_a_download_that_is_not_gguf_leaves_nothing_behind(file_server: str, tmp_path: Path) -> None:
    destination = tmp_path / "models"
    with pytest.raises(CorruptModel, match=r"fake\.gguf"):
        pull_model(f"{file_server}/fake.gguf", destination)
    assert list(destination.iterdir()) == []


def test_a_missing_url_is_a_clear_error(file_server: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="could not download"):
        pull_model(f"{file_server}/absent.gguf", tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []
