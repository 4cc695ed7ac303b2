"""The gateway's HTTP side attacked as a careless client or an attacker would: raw sockets, curl, the openai client.

The fabric is a fake (tests/gateway_fake.py) so each refusal is the gateway's own; uvicorn serves the app on
loopback exactly as `edge-agent gateway` does. Each test fails on the gateway before the front door
(fleet_gateway.limits) existed: the body was read and parsed before the key, any Host was served, no quota.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from gateway_fake import FakeFabric, fake_app, serving

from fleet_gateway.limits import GatewayLimits

KEY = "sk-symphony-laptop-0123456789"
OTHER_KEY = "sk-symphony-phone-0123456789"
BODY = {"model": "symphony", "messages": [{"role": "user", "content": "What is 6 * 7?"}]}
LIMIT = 64 * 1024
REPLY_WAIT_S = 20.0


def keys_file(tmp_path: Path, quota: str = "") -> Path:
    path = tmp_path / "api-keys.yaml"
    quota_lines = f"    quota: {quota}\n" if quota else ""
    path.write_text(
        f"keys:\n  - key: {KEY}\n    client: laptop\n{quota_lines}  - key: {OTHER_KEY}\n    client: phone\n"
    )
    return path


def raw_request(url: str, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send `head` (request line + headers) and the start of a body; read the answer without sending the rest."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=REPLY_WAIT_S) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    header_block, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = header_block.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, payload


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def openai_client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=url + "/v1", max_retries=0, timeout=REPLY_WAIT_S)


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[str]:
    with serving(fake_app(keys_file(tmp_path), GatewayLimits(max_body_bytes=LIMIT))) as url:
        yield url


# --- the key before the body ------------------------------------------------------------------------------


def test_a_wrong_key_is_refused_before_a_200_mib_body_is_sent(keyed: str) -> None:
    """The attacker announces 200 MiB and sends 64 KiB: the answer must come without waiting for the rest."""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer sk-wrong\n"
        f"Content-Type: application/json\nContent-Length: {200 * 1024 * 1024}\n"
    )
    status, headers, payload = raw_request(keyed, head, b"x" * 65536)
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert json.loads(payload)["error"]["code"] == "invalid_api_key"


def test_malformed_json_with_a_wrong_key_is_401_not_400(keyed: str) -> None:
    head = (
        "POST /v1/chat/completions HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer sk-wrong\n"
        "Content-Type: application/json\nContent-Length: 9\n"
    )
    status, _, payload = raw_request(keyed, head, b"{not json")
    assert status == 401 and json.loads(payload)["error"]["type"] == "authentication_error"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_streaming_a_huge_body_with_a_wrong_key_gets_401(keyed: str) -> None:
    """A chunked upload (no Content-Length) of 64 MiB from a pipe: refused by the key, not parsed as JSON."""
    curl = _curl(keyed, "sk-wrong", "--data-binary", "@-", "-H", "Transfer-Encoding: chunked")
    status, body = _run_with_zeros(curl, 64 * 1024 * 1024)
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"


def test_the_openai_client_with_a_wrong_key_gets_an_authentication_error(keyed: str) -> None:
    with pytest.raises(openai.AuthenticationError) as error:
        openai_client(keyed, "sk-wrong").chat.completions.create(
            model="symphony", messages=[{"role": "user", "content": "x" * (4 * LIMIT)}]
        )
    assert error.value.status_code == 401 and error.value.code == "invalid_api_key"


# --- the body limit ----------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_a_body_over_the_limit_is_413_in_openai_shape(keyed: str, tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps({**BODY, "messages": [{"role": "user", "content": "x" * LIMIT}]}))
    status, body = _run(_curl(keyed, KEY, "--data-binary", f"@{big}"))
    assert status == 413
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "body_too_large") and str(LIMIT) in error[
        "message"
    ]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_a_chunked_body_is_cut_off_at_the_limit_while_it_arrives(keyed: str) -> None:
    curl = _curl(keyed, KEY, "--data-binary", "@-", "-H", "Transfer-Encoding: chunked")
    status, body = _run_with_zeros(curl, 32 * 1024 * 1024)
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"


def test_the_openai_client_sending_too_much_gets_413_not_a_broken_connection(keyed: str) -> None:
    with pytest.raises(openai.APIStatusError) as error:
        openai_client(keyed, KEY).chat.completions.create(
            model="symphony", messages=[{"role": "user", "content": "x" * (64 * LIMIT)}]
        )
    assert error.value.status_code == 413 and error.value.code == "body_too_large"


def test_a_body_within_the_limit_is_served(keyed: str) -> None:
    answer = openai_client(keyed, KEY).chat.completions.create(
        model="symphony", messages=[{"role": "user", "content": "x" * (LIMIT // 2)}]
    )
    assert answer.choices[0].message.content == "Final answer: 42"


# --- the Host header (DNS rebinding) -----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.1.nip.io"])
def test_an_anonymous_gateway_refuses_a_foreign_host(host: str) -> None:
    with serving(fake_app()) as url:
        status, _, payload = raw_request(url, f"GET /v1/models HTTP/1.1\nHost: {host}\n")
        posted, _, _ = raw_request(
            url,
            f"POST /v1/chat/completions HTTP/1.1\nHost: {host}\nContent-Type: application/json\nContent-Length: 2\n",
            b"{}",
        )
    assert status == 400 and json.loads(payload)["error"]["code"] == "invalid_host"
    assert posted == 400


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:1", "[::1]:8000", "gateway.lan:9"])
def test_an_anonymous_gateway_serves_loopback_names_and_allowed_hosts(host: str) -> None:
    with serving(fake_app(limits=GatewayLimits(allowed_hosts=frozenset({"gateway.lan"})))) as url:
        status, _, payload = raw_request(url, f"GET /v1/models HTTP/1.1\nHost: {host}\n")
    assert status == 200 and json.loads(payload)["object"] == "list"


def test_with_keys_any_host_is_served_to_a_valid_key(keyed: str) -> None:
    status, _, _ = raw_request(keyed, f"GET /v1/models HTTP/1.1\nHost: gateway.lan\nAuthorization: Bearer {KEY}\n")
    assert status == 200


# --- quotas ------------------------------------------------------------------------------------------------


def test_requests_per_minute_admit_exactly_the_quota_then_429_with_retry_after(tmp_path: Path) -> None:
    with serving(fake_app(keys_file(tmp_path, "{requests_per_minute: 3}"))) as url:
        client = openai_client(url, KEY)
        outcomes = _parallel(10, lambda: client.chat.completions.create(**BODY))
        other = openai_client(url, OTHER_KEY).chat.completions.create(**BODY)  # another key is not affected
        usage = _get_json(url, "/v1/usage", KEY)
    refused = [outcome for outcome in outcomes if isinstance(outcome, openai.RateLimitError)]
    assert len(refused) == 7 and sum(not isinstance(outcome, Exception) for outcome in outcomes) == 3
    assert 1 <= int(refused[0].response.headers["retry-after"]) <= 60
    assert refused[0].body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert other.choices[0].message.content == "Final answer: 42"
    assert usage["requests"] == 3 and usage["refused"] == {"requests_per_minute": 7}


def test_concurrent_tasks_over_the_quota_are_refused_while_the_others_run(tmp_path: Path) -> None:
    fabric = FakeFabric()
    with serving(fake_app(keys_file(tmp_path, "{concurrent_tasks: 2}"), fabric=fabric)) as url:
        fabric.hold = held = threading.Event()
        client = openai_client(url, KEY)
        with ThreadPoolExecutor(2) as pool:
            running = [pool.submit(client.chat.completions.create, **BODY) for _ in range(2)]
            _wait_until(lambda: _get_json(url, "/v1/usage", KEY)["in_flight"] == 2)
            with pytest.raises(openai.RateLimitError) as refused:
                client.chat.completions.create(**BODY)
            held.set()
            assert all(future.result(REPLY_WAIT_S).choices for future in running)
        assert client.chat.completions.create(**BODY).choices  # a slot is free again
    assert refused.value.response.headers["retry-after"] == "1"


def test_tokens_per_day_stop_a_key_that_spent_them(tmp_path: Path) -> None:
    with serving(fake_app(keys_file(tmp_path, "{tokens_per_day: 20}"))) as url:
        client = openai_client(url, KEY)
        client.chat.completions.create(**BODY)  # 15 tokens
        client.chat.completions.create(**BODY, stream=True).close()  # streamed answers count too: 30
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(**BODY)
        usage = _get_json(url, "/v1/usage", KEY)
    assert int(refused.value.response.headers["retry-after"]) > 3600
    assert usage["tokens_last_24h"] == 30 and usage["quota"]["tokens_per_day"] == 20


def test_caps_refuse_more_runs_and_cut_the_deadline(tmp_path: Path) -> None:
    fabric = FakeFabric(deadline_s=120.0)
    quota = "{max_cot_count: 3, max_plan_k: 1, max_deadline_s: 30}"
    with serving(fake_app(keys_file(tmp_path, quota), fabric=fabric)) as url:
        client = openai_client(url, KEY)
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(**{**BODY, "model": "symphony-vote-5"})
        client.chat.completions.create(**BODY, extra_body={"deadline_s": 3600, "plan_k": 1})
        openai_client(url, OTHER_KEY).chat.completions.create(**BODY, extra_body={"deadline_s": 3600})
    assert refused.value.code == "quota_exceeded" and refused.value.param == "cot_count"
    (capped,) = fabric.clients["laptop"].sent
    (uncapped,) = fabric.clients["phone"].sent
    assert (capped.options.deadline_s, capped.options.cot_count) == (30.0, 3)
    assert uncapped.options.deadline_s == 120.0  # the operator's --deadline caps every key


# --- what errors say ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [("crash", 502, "internal_error"), ("timeout", 504, "timeout"), ("busy", 429, "busy")],
)
def test_fabric_failures_keep_internals_and_addresses_to_the_log(
    tmp_path: Path, query: str, status: int, code: str
) -> None:
    with serving(fake_app(keys_file(tmp_path))) as url:
        reply = _post(url, {**BODY, "messages": [{"role": "user", "content": query}]}, KEY)
    assert reply[0] == status and reply[1]["error"]["code"] == code
    _assert_nothing_internal(reply[1])


def test_an_unreachable_fabric_is_503_without_the_broker_url(tmp_path: Path) -> None:
    with serving(fake_app(keys_file(tmp_path), fabric=FakeFabric(reachable=False))) as url:
        status, body = _post(url, BODY, KEY)
    assert status == 503 and body["error"]["code"] == "fabric_unreachable"
    _assert_nothing_internal(body)


def test_invalid_options_name_the_option_without_echoing_internals(keyed: str) -> None:
    status, body = _post(keyed, {**BODY, "max_tokens": 0}, KEY)
    assert status == 400 and body["error"]["param"] == "max_tokens"
    _assert_nothing_internal(body)


# --- helpers -----------------------------------------------------------------------------------------------


def _assert_nothing_internal(body: dict[str, Any]) -> None:
    text = json.dumps(body)
    for secret in ("mqtt://", "10.0.0.2", "secret", "KeyError", "/var/lib", "Traceback", "pydantic.dev"):
        assert secret not in text, text


def _curl(url: str, key: str, *arguments: str) -> list[str]:
    return [
        "curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", str(REPLY_WAIT_S),
        "-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json",
        *arguments, url + "/v1/chat/completions",
    ]  # fmt: skip


def _run(command: list[str]) -> tuple[int, str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=REPLY_WAIT_S + 10)
    body, _, status = result.stdout.rpartition("\n")
    assert result.returncode == 0, result.stderr
    return int(status), body


def _run_with_zeros(command: list[str], size: int) -> tuple[int, str]:
    """Run curl with `size` zero bytes on its stdin, written by a thread (as a streaming generator would)."""
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def feed() -> None:
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError):  # curl stopped reading: the gateway has answered
            for _ in range(size // 65536):
                process.stdin.write(bytes(65536))
            process.stdin.close()

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = process.stdout.read(), process.stderr.read()
    process.wait(REPLY_WAIT_S + 10)
    writer.join(10)
    body, _, status = stdout.decode().rpartition("\n")
    assert process.returncode == 0, stderr.decode()
    return int(status), body


def _post(url: str, body: Any, key: str) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {key}\n"
        f"Content-Type: application/json\nContent-Length: {len(data)}\n"
    )
    status, _, payload = raw_request(url, head, data)
    return status, json.loads(payload)


def _get_json(url: str, path: str, key: str) -> dict[str, Any]:
    status, _, payload = raw_request(url, f"GET {path} HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {key}\n")
    assert status == 200, payload
    return json.loads(payload)  # type: ignore[no-any-return]


def _parallel(count: int, call: Any) -> list[Any]:
    def attempt() -> Any:
        try:
            return call()
        except openai.APIStatusError as error:
            return error

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: attempt(), range(count)))


def _wait_until(condition: Any, timeout_s: float = REPLY_WAIT_S) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        done.wait(0.02)
    raise AssertionError("the condition did not come true in time")
