"""The OpenAI-compatible backend against llama-cpp-python's real server and a misbehaving stub, on loopback."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import http_server

from edge_agent.backends.base import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ChatMessage,
    GenerationOptions,
    LogicError,
    PaymentRequired,
    ServerError,
)
from edge_agent.backends.openai import OpenAIBackend
from model_store import default_model_path
from shared.messages import OutputConstraint

MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is 2 + 2?"},
]
OPTIONS = GenerationOptions(max_tokens=8, temperature=0.0, seed=1)
SECRET = "sk-test-do-not-leak-0123456789"
SERVER_START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_models_endpoint(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)  # not listening yet
    pytest.fail(f"llama_cpp.server did not answer within {SERVER_START_TIMEOUT_S} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("llama_cpp.server.app", reason='needs `pip install "llama-cpp-python[server]"`')
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512", "--n_threads", "2",
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_models_endpoint(base_url, process, log)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.llamacpp
@pytest.mark.slow
def test_chat_completion_against_llama_cpp_server(llama_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMPHONY_TEST_KEY", SECRET)  # the local server ignores it; it must still be accepted
    backend = OpenAIBackend(llama_server, model="smollm2", api_key_env="SYMPHONY_TEST_KEY", timeout_s=60)
    generation = backend.generate(MESSAGES, OPTIONS)
    assert generation.text
    assert generation.prompt_tokens > 0
    assert 0 < generation.completion_tokens <= OPTIONS.max_tokens
    assert generation.latency_s > 0
    assert (generation.backend, generation.model) == ("openai", "smollm2")
    backend.close()


@pytest.mark.llamacpp
@pytest.mark.slow
def test_stop_strings_reach_the_server(llama_server: str) -> None:
    backend = OpenAIBackend(llama_server, model="smollm2")
    options = GenerationOptions(max_tokens=16, temperature=0.0, seed=1, stop=["4"])
    assert "4" not in backend.generate(MESSAGES, options).text


@pytest.mark.llamacpp
@pytest.mark.slow
def test_streaming_hands_out_tokens_and_stops_when_asked(llama_server: str) -> None:
    backend = OpenAIBackend(llama_server, model="smollm2")
    options = GenerationOptions(max_tokens=16, temperature=0.0, seed=1)
    pieces: list[str] = []
    streamed = backend.stream(MESSAGES, options, lambda piece: pieces.append(piece) or True)
    assert len(pieces) > 1 and streamed.text == "".join(pieces).strip()
    assert 0 < streamed.completion_tokens <= 16  # usage when the server sends it, else the deltas counted
    stopped: list[str] = []
    backend.stream(MESSAGES, options, lambda piece: stopped.append(piece) or len(stopped) < 2)
    assert len(stopped) == 2


class StubHandler(http.server.BaseHTTPRequestHandler):
    """Answers POST /v1/chat/completions according to the path segment before it: /402/v1/..., /garbage/v1/..."""

    seen_authorization: list[str] = []

    def do_POST(self) -> None:
        request = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen_authorization.append(self.headers.get("Authorization", ""))
        behaviour = self.path.strip("/").split("/")[0]
        if behaviour == "slow":
            time.sleep(1.0)
            # the client gives up waiting, which is what the test wants
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(200, b"{}")
        elif behaviour == "garbage":
            self._send(200, b"<html>definitely not json</html>")
        elif behaviour == "json":
            completion = {"choices": [{"message": {"content": "Final answer: 4"}}], "usage": {"completion_tokens": 3}}
            self._send(200, json.dumps(completion).encode())
        elif behaviour == "echo":  # the request's response_format, as the answer
            answer = json.dumps(json.loads(request).get("response_format"))
            self._send(200, json.dumps({"choices": [{"message": {"content": answer}}]}).encode())
        elif behaviour == "wrong-shape":
            self._send(200, json.dumps({"choices": []}).encode())
        elif behaviour == "broken-http":
            self.wfile.write(b"this is not an HTTP status line\r\n\r\n")
        elif behaviour in ("stream-error", "stream-cut"):
            first = b'data: {"choices": [{"index": 0, "delta": {"content": "Final"}}]}\n\n'
            rest = b'data: {"error": {"message": "the engine crashed"}}\n\n' if behaviour == "stream-error" else b""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(first) + (len(rest) or 100)))  # a cut stream promised more
            self.end_headers()
            self.wfile.write(first + rest)
        elif behaviour.isdigit():
            self._send(int(behaviour), json.dumps({"error": {"message": f"stub says {behaviour}"}}).encode())
        else:
            self._send(404, b"{}")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture(scope="module")
def stub_server() -> Iterator[str]:
    with http_server(StubHandler) as url:
        yield url


@pytest.mark.parametrize(
    ("behaviour", "error", "kind"),
    [
        ("402", PaymentRequired, "payment_required"),
        ("500", ServerError, "server_error"),
        ("503", ServerError, "server_error"),
        ("400", LogicError, "logic_error"),
        ("401", LogicError, "logic_error"),
        ("404", LogicError, "logic_error"),
        ("504", BackendTimeout, "timeout"),
        ("garbage", LogicError, "logic_error"),
        ("wrong-shape", LogicError, "logic_error"),
        ("broken-http", ServerError, "server_error"),
    ],
)
@pytest.mark.parametrize("streamed", [False, True])
def test_http_failures_map_to_the_error_tree(
    stub_server: str,
    monkeypatch: pytest.MonkeyPatch,
    behaviour: str,
    error: type[BackendError],
    kind: str,
    streamed: bool,
) -> None:
    monkeypatch.setenv("SYMPHONY_TEST_KEY", SECRET)
    backend = OpenAIBackend(f"{stub_server}/{behaviour}/v1", model="m", api_key_env="SYMPHONY_TEST_KEY", timeout_s=5)
    with pytest.raises(error) as raised:
        if streamed:
            backend.stream(MESSAGES, OPTIONS, lambda piece: True)
        else:
            backend.generate(MESSAGES, OPTIONS)
    assert raised.value.kind == kind
    assert SECRET not in str(raised.value)
    assert StubHandler.seen_authorization[-1] == f"Bearer {SECRET}"


@pytest.mark.parametrize("behaviour", ["stream-error", "stream-cut"])
def test_a_stream_that_fails_midway_is_a_server_error(stub_server: str, behaviour: str) -> None:
    pieces: list[str] = []
    backend = OpenAIBackend(f"{stub_server}/{behaviour}/v1", model="m", timeout_s=5)
    with pytest.raises(ServerError):
        backend.stream(MESSAGES, OPTIONS, lambda piece: pieces.append(piece) or True)
    assert pieces == ["Final"]


def test_a_json_schema_constraint_travels_as_response_format(stub_server: str) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    constraint = OutputConstraint(type="json_schema", json_schema=schema, name="sum")
    backend = OpenAIBackend(f"{stub_server}/echo/v1", model="m")
    sent = json.loads(backend.generate(MESSAGES, OPTIONS.model_copy(update={"constraint": constraint})).text)
    assert sent == {"type": "json_schema", "json_schema": {"name": "sum", "schema": schema, "strict": True}}
    regex = OutputConstraint(type="regex", pattern="[0-9]+")
    with pytest.raises(LogicError, match="cannot honour a regex constraint"):
        backend.generate(MESSAGES, OPTIONS.model_copy(update={"constraint": regex}))


def test_a_slow_server_times_out(stub_server: str) -> None:
    backend = OpenAIBackend(f"{stub_server}/slow/v1", model="m", timeout_s=0.2)
    with pytest.raises(BackendTimeout, match="did not answer"):
        backend.generate(MESSAGES, OPTIONS)


def test_no_key_sends_no_authorization(stub_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYMPHONY_TEST_KEY", raising=False)
    backend = OpenAIBackend(f"{stub_server}/500/v1", model="m", api_key_env="SYMPHONY_TEST_KEY")
    with pytest.raises(ServerError):
        backend.generate(MESSAGES, OPTIONS)
    assert StubHandler.seen_authorization[-1] == ""


def test_nothing_listening_is_unavailable() -> None:
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", model="m", timeout_s=2)
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        backend.generate(MESSAGES, OPTIONS)


def test_a_server_that_does_not_stream_still_serves_a_streamed_run(stub_server: str) -> None:
    pieces: list[str] = []
    backend = OpenAIBackend(f"{stub_server}/json/v1", model="m")
    generation = backend.stream(MESSAGES, OPTIONS, lambda piece: pieces.append(piece) or True)
    assert pieces == ["Final answer: 4"] and (generation.text, generation.completion_tokens) == ("Final answer: 4", 3)
