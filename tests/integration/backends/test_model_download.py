"""Pulling a model by URL from a loopback HTTP server: progress, atomic placement, validation."""

from __future__ import annotations

import functools
import hashlib
import http.server
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import http_server

from model_store import CorruptModel, ModelError, UnpinnedModelURL, pull_model, resolve_model

GGUF_BYTES = b"GGUF" + (3).to_bytes(4, "little") + bytes(16) + b"\x01" * 3_000_000
FAKE_BYTES = b"<html>login page</html>" * 10
# The loopback server speaks plain http: every URL pins the file's sha256 (issue 19 item 12; before, unpinned)
TINY_PIN = f"#sha256={hashlib.sha256(GGUF_BYTES).hexdigest()}"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    served = tmp_path / "served"
    served.mkdir()
    (served / "tiny.gguf").write_bytes(GGUF_BYTES)
    (served / "fake.gguf").write_bytes(FAKE_BYTES)
    with http_server(functools.partial(QuietHandler, directory=str(served))) as url:
        yield url


def test_pull_by_url_reports_progress_and_lands_in_the_models_dir(file_server: str, tmp_path: Path) -> None:
    destination = tmp_path / "models"
    reports: list[tuple[int, int | None]] = []
    path = pull_model(
        f"{file_server}/tiny.gguf{TINY_PIN}", destination, progress=lambda done, total: reports.append((done, total))
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
        pull_model(f"{file_server}/fake.gguf#sha256={hashlib.sha256(FAKE_BYTES).hexdigest()}", destination)
    assert list(destination.iterdir()) == []


def test_a_missing_url_is_a_clear_error(file_server: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="could not download"):
        pull_model(f"{file_server}/absent.gguf{TINY_PIN}", tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []


# --- model URL pinning: the attacker sits on the path of a plain http download (issue 19 item 12) ----------------


def test_a_plain_http_url_without_a_pin_is_refused_before_any_byte_is_fetched(tmp_path: Path) -> None:
    asked: list[str] = []

    class Recording(QuietHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            super().do_GET()

    with http_server(Recording) as url, pytest.raises(UnpinnedModelURL, match="sha256="):
        pull_model(f"{url}/tiny.gguf", tmp_path / "models")
    assert asked == []
    assert not (tmp_path / "models").exists() or list((tmp_path / "models").iterdir()) == []


def test_a_swapped_model_never_lands_under_its_name(file_server: str, tmp_path: Path) -> None:
    """The attacker serves another valid GGUF file at the pinned URL: the download is refused, nothing is kept."""
    served = tmp_path / "served"
    swapped = b"GGUF" + (3).to_bytes(4, "little") + bytes(16) + b"\x02" * 1_000_000
    (served / "tiny.gguf").write_bytes(swapped)
    destination = tmp_path / "models"
    with pytest.raises(CorruptModel, match="not the pinned"):
        pull_model(f"{file_server}/tiny.gguf{TINY_PIN}", destination)
    assert list(destination.iterdir()) == []
