"""Models shared on the LAN: every node serves the models it holds over HTTP, and fetches what it lacks from peers.

    GET /models/<sha256>        the file (Range: bytes=N- resumes), 404 when not held, 503 when busy
    HEAD /models/<sha256>       its size

A peer serves a file only by its sha256 and only from what `ModelHoldings` indexed, so no request names a path.
Each server takes at most `max_uploads` downloads at once and answers 503 beyond that: a model pulled once onto
the LAN then spreads like a tree (every finished node serves too) instead of every node pulling from one host.

A fetch tries the peers that hold the model in random order, resumes a partial download where it stopped
(HTTP Range), checks the sha256 and the size, and only then renames the file into place. The internet is never
asked unless the model reference names a `url` (then it is the last source tried).

Errors::

    ModelError (model_store)
    └── ModelFetchError     no source gave the file within the deadline (each source's reason is in the message)
"""

from __future__ import annotations

import errno
import hashlib
import http.server
import logging
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_store import ModelError
from model_store.holdings import HASH_CHUNK_BYTES, ModelHoldings, stored_name
from shared.messages import ModelRef

log = logging.getLogger(__name__)
DEFAULT_MAX_UPLOADS = 4
TRANSFER_CHUNK_BYTES = 1 << 20
_MODEL_PATH = re.compile(r"^/models/([0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class ModelFetchError(ModelError):
    """No source gave a model file with the right sha256 and size in time."""


# --- serving ----------------------------------------------------------------------------------------------


@dataclass
class ServerCounters:
    """What a model server did (bytes served per peer is what the rollout benchmark prints)."""

    bytes_served: int = 0
    downloads: int = 0
    refused_busy: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelServer:
    """A threaded HTTP server of the models in `holdings` (start, url, close)."""

    def __init__(
        self,
        holdings: ModelHoldings,
        host: str = "127.0.0.1",
        port: int = 0,
        max_uploads: int = DEFAULT_MAX_UPLOADS,
        upload_bytes_per_s: float | None = None,
    ) -> None:
        self.holdings = holdings
        self.upload_bytes_per_s = upload_bytes_per_s  # per upload: a board keeps link for its runs
        self.counters = ServerCounters()
        self._uploads = threading.BoundedSemaphore(max_uploads)
        handler = _handler_class(self)
        self._server = http.server.ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, advertised_host: str) -> str:
        host = f"[{advertised_host}]" if ":" in advertised_host else advertised_host
        return f"http://{host}:{self.port}"

    def start(self) -> ModelServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="model-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def open_model_server(
    holdings: ModelHoldings, host: str, port: int, max_uploads: int = DEFAULT_MAX_UPLOADS, strict_port: bool = False
) -> ModelServer:
    """A model server on `port`, or on a port the system picks when another process holds that one (two nodes on
    one host) and `strict_port` is off: peers find a server by the address in the beacon, so any port serves them.
    `strict_port` (a firewall open for that port only) raises the OSError instead."""
    try:
        return ModelServer(holdings, host, port, max_uploads)
    except OSError as error:
        if strict_port or port == 0 or error.errno != errno.EADDRINUSE:
            raise
    server = ModelServer(holdings, host, 0, max_uploads)
    log.warning(
        "model server: port %d on %s is in use (another node on this host?); serving on port %d instead "
        "(the beacon carries it; set model_server.strict_port to refuse)",
        port,
        host,
        server.port,
    )
    return server


def _handler_class(server: ModelServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "symphony-edge-models"

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("model server: " + format, *args)

        def _answer(self, body: bool) -> None:
            matched = _MODEL_PATH.match(urllib.parse.urlsplit(self.path).path)
            held = server.holdings.find(matched.group(1)) if matched else None
            if held is None:
                self._refuse(404, "no such model here")
                return
            size = held.reference.size_bytes
            try:
                wanted = _parse_range(self.headers.get("Range"), size)
            except ValueError as error:
                self._refuse(416, str(error))
                return
            if not body:
                self._headers(200, size, None, size)
                return
            if not server._uploads.acquire(blocking=False):
                with server.counters.lock:
                    server.counters.refused_busy += 1
                self._refuse(503, "busy: try another peer", retry_after=1)
                return
            try:
                self._send(held.path, wanted, size)
            finally:
                server._uploads.release()

        def _send(self, path: Path, wanted: tuple[int, int] | None, size: int) -> None:
            start, end = wanted if wanted is not None else (0, size - 1)
            self._headers(206 if wanted is not None else 200, end - start + 1, (start, end), size)
            sent = 0
            try:
                with path.open("rb") as handle:
                    handle.seek(start)
                    remaining = end - start + 1
                    began = time.monotonic()
                    while remaining > 0 and (chunk := handle.read(min(TRANSFER_CHUNK_BYTES, remaining))):
                        self.wfile.write(chunk)
                        sent += len(chunk)
                        remaining -= len(chunk)
                        if server.upload_bytes_per_s:
                            time.sleep(max(0.0, sent / server.upload_bytes_per_s - (time.monotonic() - began)))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the peer went away; it resumes from what it has
            finally:
                with server.counters.lock:
                    server.counters.bytes_served += sent
                    server.counters.downloads += 1

        def _headers(self, status: int, length: int, span: tuple[int, int] | None, size: int) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            if span is not None:
                self.send_header("Content-Range", f"bytes {span[0]}-{span[1]}/{size}")
            self.end_headers()

        def _refuse(self, status: int, reason: str, retry_after: int | None = None) -> None:
            data = reason.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            if retry_after is not None:
                self.send_header("Retry-After", str(retry_after))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end) of a `bytes=N-[M]` range; None for the whole file. Raises ValueError when unsatisfiable.

    Forms we do not serve (several ranges, a suffix range) get the whole file, as RFC 9110 allows.
    """
    matched = _RANGE.match(header.strip()) if header else None
    if matched is None:
        return None
    start = int(matched.group(1))
    end = int(matched.group(2)) if matched.group(2) else size - 1
    if start >= size or end < start:
        raise ValueError(f"range {header!r} is outside the {size} bytes")
    return start, min(end, size - 1)


# --- fetching ---------------------------------------------------------------------------------------------


@dataclass
class FetchReport:
    """How a fetch went: where the bytes came from (for the rollout measures)."""

    path: Path
    bytes_by_source: dict[str, int] = field(default_factory=dict)
    attempts: int = 0

    @property
    def sources(self) -> list[str]:
        return [source for source, count in self.bytes_by_source.items() if count]


class _Busy(Exception):
    """A peer answered 503: try another."""


def peer_url(server: str, sha256: str) -> str:
    return f"{server.rstrip('/')}/models/{sha256}"


def fetch_model(
    reference: ModelRef,
    peers: Callable[[], Iterable[str]],
    holdings: ModelHoldings,
    deadline_s: float = 1800.0,
    rng: random.Random | None = None,
    timeout_s: float = 30.0,
    cancelled: threading.Event | None = None,
    url_after_s: float = 0.0,
) -> FetchReport:
    """Fetch `reference` into the holdings' directory from peers (model server URLs), else its `url`.

    Blocking (call it in a thread). `peers` is asked again each round, so nodes that finished meanwhile count.
    Returns at once when the model is already held. Raises `ModelFetchError` after `deadline_s`, or soon after
    `cancelled` is set (the partial file stays, for a later fetch to resume). The reference's `url` joins the
    sources only `url_after_s` after the start: peers learnt from retained beacons, which arrive a moment after
    the subscription, come first, so that a fleet does not pull from the operator's host what a peer holds.
    """
    held = holdings.find(reference.sha256)
    if held is not None:
        return FetchReport(held.path)
    rng = rng or random.Random()
    directory = holdings.directory
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / stored_name(reference)
    partial = directory / f".{target.name}.part"
    report = FetchReport(target)
    reasons: dict[str, str] = {}
    started = time.monotonic()
    deadline = started + deadline_s
    pause_s = 0.05
    cancelled = cancelled or threading.Event()
    while time.monotonic() < deadline and not cancelled.is_set():
        sources = _sources(reference, peers, rng, with_url=time.monotonic() - started >= url_after_s)
        if not sources and time.monotonic() - started >= url_after_s:
            reasons.setdefault("peers", "no peer holds this model and the desired state names no url")
        for source in sources:
            report.attempts += 1
            try:
                got = _download(source, partial, reference, timeout_s, cancelled)
            except _Busy:
                reasons[source] = "busy"
                continue
            except (OSError, urllib.error.URLError, ValueError) as error:
                reasons[source] = str(error)[:200]
                continue
            report.bytes_by_source[source] = report.bytes_by_source.get(source, 0) + got
            if partial.stat().st_size < reference.size_bytes:
                reasons[source] = "the transfer stopped early"
                continue  # resume from another source
            problem = _check(partial, reference)
            if problem:
                partial.unlink(missing_ok=True)
                reasons[source] = problem
                continue
            partial.replace(target)
            holdings.add(target, reference)
            return report
        cancelled.wait(min(pause_s, max(0.0, deadline - time.monotonic())) * rng.uniform(0.5, 1.5))
        pause_s = min(pause_s * 2, 2.0)
    if cancelled.is_set():
        raise ModelFetchError(f"the fetch of model {reference.name} was cancelled (a newer desired state)")
    why = "; ".join(f"{source}: {reason}" for source, reason in list(reasons.items())[-5:])
    raise ModelFetchError(f"could not fetch model {reference.name} ({reference.sha256[:12]}): {why}")


def _sources(reference: ModelRef, peers: Callable[[], Iterable[str]], rng: random.Random, with_url: bool) -> list[str]:
    servers = [server for server in dict.fromkeys(peers()) if server.startswith(("http://", "https://"))]
    rng.shuffle(servers)
    sources = [peer_url(server, reference.sha256) for server in servers]
    if with_url and reference.url and reference.url.startswith(("http://", "https://")):
        sources.append(reference.url)  # the operator named it: the last resort
    return sources


def _download(source: str, partial: Path, reference: ModelRef, timeout_s: float, cancelled: threading.Event) -> int:
    """Append what `source` sends after the bytes already in `partial`; returns the bytes received."""
    offset = partial.stat().st_size if partial.exists() else 0
    if offset > reference.size_bytes:
        partial.unlink()
        offset = 0
    if offset == reference.size_bytes:
        return 0
    request = urllib.request.Request(source, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        if error.code == 503:
            raise _Busy() from None
        raise
    received = 0
    with response:
        if offset and response.status != 206:
            offset = 0  # the source ignored the range: start over with what it sends
        with partial.open("r+b" if offset else "wb") as sink:
            sink.seek(offset)
            sink.truncate()
            while not cancelled.is_set() and (chunk := response.read(TRANSFER_CHUNK_BYTES)):
                if offset + received + len(chunk) > reference.size_bytes:
                    raise ValueError(f"the source sent more than the {reference.size_bytes} bytes announced")
                sink.write(chunk)
                received += len(chunk)
    return received


def _check(path: Path, reference: ModelRef) -> str:
    size = path.stat().st_size
    if size != reference.size_bytes:
        return f"size {size} is not the {reference.size_bytes} announced"
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    if digest.hexdigest() != reference.sha256:
        return f"sha256 mismatch (got {digest.hexdigest()[:12]}, want {reference.sha256[:12]})"
    return ""
