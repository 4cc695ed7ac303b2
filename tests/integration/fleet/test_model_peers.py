"""Model transfer between peers over loopback HTTP: ranges, resume, sha256 and size checks, busy peers, no paths."""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_store.holdings import ModelHoldings, stored_name
from model_store.peers import ModelFetchError, ModelServer, fetch_model, open_model_server, peer_url
from shared.messages import ModelRef

DATA = os.urandom(3 * (1 << 20) + 123)


@pytest.fixture
def seed(tmp_path: Path) -> Iterator[tuple[ModelServer, ModelRef]]:
    folder = tmp_path / "seed"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(DATA)
    holdings = ModelHoldings(folder)
    (held,) = holdings.refresh()
    server = ModelServer(holdings, max_uploads=1).start()
    yield server, held.reference
    server.close()


def get(server: ModelServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read()


def test_holdings_hash_once_and_remember(tmp_path: Path, seed: tuple[ModelServer, ModelRef]) -> None:
    _, reference = seed
    assert reference.sha256 == hashlib.sha256(DATA).hexdigest() and reference.size_bytes == len(DATA)
    assert (tmp_path / "seed" / ".index.json").is_file()


def test_the_server_serves_ranges_and_only_what_it_holds(seed: tuple[ModelServer, ModelRef]) -> None:
    server, reference = seed
    assert get(server, f"/models/{reference.sha256}") == (200, DATA)
    assert get(server, f"/models/{reference.sha256}", {"Range": "bytes=100-199"}) == (206, DATA[100:200])
    assert get(server, f"/models/{reference.sha256}", {"Range": f"bytes={len(DATA)}-"})[0] == 416
    assert get(server, f"/models/{'0' * 64}")[0] == 404
    for hostile in ("/models/../../etc/passwd", "/models/%2e%2e%2fm.gguf", "/m.gguf", "/models/" + "a" * 65):
        assert get(server, hostile)[0] == 404


def test_a_fetch_resumes_a_partial_download_and_checks_the_digest(
    tmp_path: Path, seed: tuple[ModelServer, ModelRef]
) -> None:
    server, reference = seed
    holdings = ModelHoldings(tmp_path / "mine")
    (tmp_path / "mine").mkdir()
    partial = tmp_path / "mine" / f".{stored_name(reference)}.part"
    partial.write_bytes(DATA[: 1 << 20])  # an interrupted earlier download
    report = fetch_model(reference, lambda: [server.url("127.0.0.1")], holdings, deadline_s=30)
    assert report.path.read_bytes() == DATA and not partial.exists()
    assert sum(report.bytes_by_source.values()) == len(DATA) - (1 << 20)  # only the missing part travelled
    assert holdings.find(reference.sha256) is not None


def test_a_peer_sending_other_bytes_is_not_believed(tmp_path: Path, seed: tuple[ModelServer, ModelRef]) -> None:
    server, reference = seed
    lie = reference.model_copy(update={"sha256": "d" * 64})
    (tmp_path / "mine").mkdir()
    holdings = ModelHoldings(tmp_path / "mine")
    with pytest.raises(ModelFetchError, match=r"no peer holds|sha256 mismatch|404"):
        fetch_model(lie, lambda: [server.url("127.0.0.1")], holdings, deadline_s=0.5)
    assert not any(path.suffix == ".gguf" for path in (tmp_path / "mine").iterdir())


def test_without_peers_or_url_nothing_is_downloaded(tmp_path: Path, seed: tuple[ModelServer, ModelRef]) -> None:
    _, reference = seed
    (tmp_path / "mine").mkdir()
    with pytest.raises(ModelFetchError, match="no peer holds this model"):
        fetch_model(reference, lambda: [], ModelHoldings(tmp_path / "mine"), deadline_s=0.3)


def test_a_peer_announced_a_moment_late_is_preferred_to_the_operators_url(
    tmp_path: Path, seed: tuple[ModelServer, ModelRef]
) -> None:
    """Retained beacons arrive after the subscription: the url waits `url_after_s`, so the peer still serves."""
    origin, reference = seed
    with_url = reference.model_copy(update={"url": peer_url(origin.url("127.0.0.1"), reference.sha256)})
    (tmp_path / "peer").mkdir()
    (tmp_path / "peer" / "copy.gguf").write_bytes(DATA)
    peer = ModelServer(ModelHoldings(tmp_path / "peer"))
    peer.holdings.refresh()
    peer.start()
    announced = threading.Timer(0.4, lambda: None)
    announced.start()
    try:
        (tmp_path / "mine").mkdir()
        late = lambda: [] if announced.is_alive() else [peer.url("127.0.0.1")]  # noqa: E731
        report = fetch_model(with_url, late, ModelHoldings(tmp_path / "mine"), 30, url_after_s=2.0)
        assert report.sources == [peer_url(peer.url("127.0.0.1"), reference.sha256)]
        assert origin.counters.downloads == 0
        (tmp_path / "alone").mkdir()  # no peer at all: the url serves once the wait is over
        report = fetch_model(with_url, lambda: [], ModelHoldings(tmp_path / "alone"), 30, url_after_s=0.3)
        assert report.sources == [with_url.url]
    finally:
        announced.cancel()
        peer.close()


def test_a_busy_peer_sends_the_fetcher_to_another(tmp_path: Path, seed: tuple[ModelServer, ModelRef]) -> None:
    server, reference = seed
    hold = threading.Event()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", peer_url("", reference.sha256))  # takes the one upload slot and stalls reading
    response = connection.getresponse()
    response.read(10)
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "copy.gguf").write_bytes(DATA)
    second = ModelServer(ModelHoldings(tmp_path / "second"), max_uploads=1)
    second.holdings.refresh()
    second.start()
    try:
        (tmp_path / "mine").mkdir()
        peers = [server.url("127.0.0.1"), second.url("127.0.0.1")]
        report = fetch_model(reference, lambda: peers, ModelHoldings(tmp_path / "mine"), 30, random.Random(1))
        assert report.sources == [peer_url(second.url("127.0.0.1"), reference.sha256)]
        assert server.counters.refused_busy >= 1 or report.attempts == 1
    finally:
        hold.set()
        connection.close()
        second.close()


def test_a_second_server_on_a_taken_port_serves_on_another_unless_the_port_is_strict(
    tmp_path: Path, seed: tuple[ModelServer, ModelRef]
) -> None:
    server, _ = seed
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "other.gguf").write_bytes(b"other model")
    holdings = ModelHoldings(tmp_path / "other")
    (held,) = holdings.refresh()
    with pytest.raises(OSError, match="in use"):
        open_model_server(holdings, "127.0.0.1", server.port, strict_port=True)
    second = open_model_server(holdings, "127.0.0.1", server.port).start()
    try:
        assert second.port not in (0, server.port)
        assert get(second, f"/models/{held.reference.sha256}") == (200, b"other model")
        assert get(server, f"/models/{held.reference.sha256}")[0] == 404  # each serves its own
    finally:
        second.close()
