"""Any OpenAI-compatible chat server (llama-server, vLLM, OpenRouter) over HTTP, using only the stdlib.

HTTP failures are translated here: 402 -> ``PaymentRequired``, 5xx -> ``ServerError``, timeouts ->
``BackendTimeout``, connection failures -> ``BackendUnavailable``, other 4xx and malformed replies ->
``LogicError``. The API key is read from an environment variable and never logged or put in messages.

``stream`` asks for server-sent events and hands each delta to the sink; when the sink says stop, the connection
is closed, which makes the server stop generating (llama-server, vLLM and llama-cpp-python's server do).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from edge_agent.backends.base import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ChatMessage,
    Generation,
    GenerationOptions,
    LogicError,
    PaymentRequired,
    ServerError,
    TokenSink,
    refuse_constraint,
)

ERROR_BODY_EXCERPT_CHARS = 300


class OpenAIBackend:
    """Call ``POST {base_url}/chat/completions`` on an OpenAI-compatible server.

    ``base_url`` includes the API prefix, e.g. ``http://127.0.0.1:8080/v1``. The key comes from the
    environment variable named by ``api_key_env``; a missing key is fine for local servers.
    """

    name = "openai"
    supports_chat_template = True
    device = "remote"
    constraint_kinds = ("json_schema",)  # OpenAI's `response_format`; regex and choice have no standard field

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s

    def generate(self, messages: list[ChatMessage], options: GenerationOptions) -> Generation:
        """Send one chat completion request and return the first choice with the reported usage."""
        started = time.perf_counter()
        reply = self._post("/chat/completions", self._body(messages, options))
        latency = time.perf_counter() - started
        return _parse_completion(reply, self.name, self.model, latency)

    def stream(self, messages: list[ChatMessage], options: GenerationOptions, sink: TokenSink) -> Generation:
        """Stream the completion (SSE), handing each delta to ``sink``; a False return closes the connection."""
        body = {**self._body(messages, options), "stream": True, "stream_options": {"include_usage": True}}
        url = self.base_url + "/chat/completions"
        started = time.perf_counter()
        pieces: list[str] = []
        usage: dict[str, Any] = {}
        with self._translated(url), urllib.request.urlopen(self._request(url, body), timeout=self.timeout_s) as reply:
            if "text/event-stream" not in reply.headers.get("Content-Type", ""):  # a server that does not stream
                generation = _parse_completion(_json(url, reply.read()), self.name, self.model, 0.0)
                sink(generation.text)
                return generation.model_copy(update={"latency_s": time.perf_counter() - started})
            for chunk in _events(url, reply):
                usage = chunk.get("usage") or usage
                choices = chunk.get("choices") or []
                piece = choices[0].get("delta", {}).get("content") if choices else None
                if piece:
                    pieces.append(str(piece))
                    if not sink(str(piece)):
                        break
        return Generation(
            text="".join(pieces).strip(),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", len(pieces))),
            latency_s=time.perf_counter() - started,
            backend=self.name,
            model=self.model,
        )

    def _body(self, messages: list[ChatMessage], options: GenerationOptions) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
        }
        if options.seed is not None:
            body["seed"] = options.seed
        if options.stop:
            body["stop"] = options.stop
        refuse_constraint(self.name, options, self.constraint_kinds)
        if options.constraint is not None:
            schema = {"name": options.constraint.name, "schema": options.constraint.json_schema, "strict": True}
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        return body

    def _request(self, url: str, body: dict[str, Any]) -> urllib.request.Request:
        return urllib.request.Request(
            url, data=json.dumps(body).encode("utf-8"), headers=self._headers(), method="POST"
        )

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        url = self.base_url + path
        with self._translated(url), urllib.request.urlopen(self._request(url, body), timeout=self.timeout_s) as reply:
            raw = reply.read()
        return _json(url, raw)

    @contextlib.contextmanager
    def _translated(self, url: str) -> Iterator[None]:
        """Turn the HTTP and socket errors of a request (sent or being read) into the backend error tree."""
        try:
            yield
        except urllib.error.HTTPError as error:
            raise _http_error(url, error.code, _excerpt(error.read())) from error
        except TimeoutError as error:
            raise BackendTimeout(f"{url} did not answer within {self.timeout_s} s") from error
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise BackendTimeout(f"{url} did not answer within {self.timeout_s} s") from error
            raise BackendUnavailable(f"cannot reach {url}: {error.reason}") from error
        except http.client.HTTPException as error:
            # the peer is not speaking HTTP properly (garbage status line, dropped mid-reply)
            raise ServerError(f"{url} sent a broken HTTP reply: {error!r}") from error
        except ConnectionError as error:
            raise ServerError(f"{url} dropped the connection: {error}") from error

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        api_key = os.environ.get(self.api_key_env)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    def close(self) -> None:
        """Nothing to release: every request opens and closes its own connection."""


def _json(url: str, raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as error:
        raise LogicError(f"{url} returned a reply that is not JSON: {_excerpt(raw)!r}") from error


def _events(url: str, reply: Any) -> Iterator[dict[str, Any]]:
    """The JSON objects of a server-sent event stream, up to `[DONE]`."""
    for raw_line in reply:
        line = raw_line.strip()
        if not line.startswith(b"data:"):
            continue  # comments, event names, blank separators
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        chunk = _json(url, data)
        if not isinstance(chunk, dict):
            raise LogicError(f"{url} streamed something that is not a chunk: {_excerpt(data)!r}")
        if "error" in chunk:
            raise ServerError(f"{url} failed while streaming: {_excerpt(chunk['error'])}")
        yield chunk


def _http_error(url: str, status: int, body: str) -> BackendError:
    message = f"{url} answered HTTP {status}: {body}"
    if status == 402:
        return PaymentRequired(message)
    if status in (408, 504):
        return BackendTimeout(message)
    if status >= 500:
        return ServerError(message)
    return LogicError(message)


def _parse_completion(reply: Any, backend: str, model: str, latency_s: float) -> Generation:
    try:
        text = reply["choices"][0]["message"]["content"] or ""
        usage = reply.get("usage") or {}
        return Generation(
            text=str(text).strip(),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_s=latency_s,
            backend=backend,
            model=str(reply.get("model") or model),
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
        raise LogicError(f"the server's reply is not a chat completion: {_excerpt(reply)!r}") from error


def _excerpt(payload: Any) -> str:
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8", errors="replace")
    return str(payload)[:ERROR_BODY_EXCERPT_CHARS]
