"""Any OpenAI-compatible chat server (llama-server, vLLM, OpenRouter), through the official `openai` client.

The client's failures are translated here: HTTP 402 -> ``PaymentRequired``, 408 and 504 and timeouts ->
``BackendTimeout``, 5xx, an error streamed mid-reply and a connection dropped or garbled -> ``ServerError``, no
connection at all -> ``BackendUnavailable``, other 4xx and malformed replies -> ``LogicError``. The client never
retries (``max_retries=0``): the router re-dispatches a failed run to another agent. The API key is read from an
environment variable and never logged or put in messages. Without the `openai` package (the extra
``symphony-edge[openai]``) the backend cannot be created: ``BackendUnavailable``.

``stream`` asks for server-sent events and hands each delta to the sink; when the sink says stop, the stream is
closed, which makes the server stop generating (llama-server, vLLM and llama-cpp-python's server do).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pydantic

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

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion

ERROR_BODY_EXCERPT_CHARS = 300


class OpenAIBackend:
    """Chat completions (``POST {base_url}/chat/completions``) on an OpenAI-compatible server.

    ``base_url`` includes the API prefix, e.g. ``http://127.0.0.1:8080/v1``. The key comes from the
    environment variable named by ``api_key_env``; a missing key is fine for local servers (no Authorization).
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
        openai = _import_openai()
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"  # what errors name
        self.model = model
        self.timeout_s = timeout_s
        # The key of `api_key_env` alone, never OPENAI_API_KEY by accident. Without one, each request omits the
        # Authorization header (the client insists on some key, so it gets a placeholder it never sends).
        api_key = os.environ.get(api_key_env)
        self.headers = {} if api_key else {"Authorization": openai.Omit()}
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "-", timeout=timeout_s, max_retries=0)

    def generate(self, messages: list[ChatMessage], options: GenerationOptions) -> Generation:
        """Send one chat completion request and return the first choice with the reported usage."""
        started = time.perf_counter()
        with self._translated():
            completion = self.client.chat.completions.create(**self._request(messages, options))
        return self._generation(completion, time.perf_counter() - started)

    def stream(self, messages: list[ChatMessage], options: GenerationOptions, sink: TokenSink) -> Generation:
        """Stream the completion (SSE), handing each delta to ``sink``; a False return closes the stream."""
        request = {**self._request(messages, options), "stream": True, "stream_options": {"include_usage": True}}
        started = time.perf_counter()
        pieces: list[str] = []
        usage = None
        with self._translated():
            reply = self.client.chat.completions.with_raw_response.create(**request)
            if "text/event-stream" not in reply.headers.get("content-type", ""):  # a server that does not stream
                generation = self._generation(_completion(reply.http_response.read()), 0.0)
                sink(generation.text)
                return generation.model_copy(update={"latency_s": time.perf_counter() - started})
            with reply.parse() as chunks:  # leaving it closes the connection: the server stops generating
                for chunk in chunks:
                    usage = chunk.usage or usage
                    piece = getattr(chunk.choices[0].delta, "content", None) if chunk.choices else None  # unchecked
                    if piece:
                        pieces.append(piece)
                        if not sink(piece):
                            break
        return Generation(
            text="".join(pieces).strip(),
            prompt_tokens=getattr(usage, "prompt_tokens", None) or 0,
            completion_tokens=getattr(usage, "completion_tokens", None) or len(pieces),
            latency_s=time.perf_counter() - started,
            backend=self.name,
            model=self.model,
        )

    def _request(self, messages: list[ChatMessage], options: GenerationOptions) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` (the output constraint as ``response_format``)."""
        request: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "extra_headers": self.headers,
        }
        if options.seed is not None:
            request["seed"] = options.seed
        if options.stop:
            request["stop"] = options.stop
        refuse_constraint(self.name, options, self.constraint_kinds)
        if options.constraint is not None:
            schema = {"name": options.constraint.name, "schema": options.constraint.json_schema, "strict": True}
            request["response_format"] = {"type": "json_schema", "json_schema": schema}
        return request

    def _generation(self, completion: Any, latency_s: float) -> Generation:
        """The first choice of a completion; the client checks no shape, so a reply without one is a LogicError."""
        try:
            usage = completion.usage
            return Generation(
                text=(completion.choices[0].message.content or "").strip(),
                prompt_tokens=getattr(usage, "prompt_tokens", None) or 0,
                completion_tokens=getattr(usage, "completion_tokens", None) or 0,
                latency_s=latency_s,
                backend=self.name,
                model=getattr(completion, "model", None) or self.model,
            )
        except (AttributeError, IndexError, TypeError, ValueError) as error:
            raise LogicError(
                f"{self.url} returned a reply that is not a chat completion: {_excerpt(completion)}"
            ) from error

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn the client's errors (request sent, or reply being read) into the backend error tree."""
        import openai

        try:
            yield
        except openai.APITimeoutError as error:
            raise BackendTimeout(f"{self.url} did not answer within {self.timeout_s} s") from error
        except openai.APIConnectionError as error:
            # openai 1.x wraps httpx's ConnectError, later versions httpx2's: nothing listening, no route, no host
            if type(error.__cause__).__name__ == "ConnectError":
                raise BackendUnavailable(f"cannot reach {self.url}: {error.__cause__}") from error
            raise ServerError(f"{self.url} dropped the connection or broke HTTP: {error.__cause__!r}") from error
        except openai.APIStatusError as error:
            raise _status_error(self.url, error.status_code, _excerpt(error.response.text)) from error
        except openai.APIResponseValidationError as error:
            raise LogicError(f"{self.url} returned a reply that is not a chat completion: {error}") from error
        except openai.APIError as error:  # an error event in the middle of a stream
            raise ServerError(f"{self.url} failed while streaming: {_excerpt(error.body or error.message)}") from error
        except (json.JSONDecodeError, pydantic.ValidationError) as error:
            raise LogicError(f"{self.url} returned a reply that is not a chat completion: {error}") from error

    def close(self) -> None:
        """Close the client's connection pool."""
        self.client.close()


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as error:
        hint = 'install it with `pip install "symphony-edge[openai]"`'
        raise BackendUnavailable(f"the openai backend needs the `openai` package ({error}); {hint}") from error
    return openai


def _completion(body: bytes) -> ChatCompletion | Any:
    """A whole (unstreamed) completion built as the client builds its replies: unchecked (`_generation` checks)."""
    from openai.types.chat import ChatCompletion

    data = json.loads(body)
    return ChatCompletion.model_construct(**data) if isinstance(data, dict) else data


def _status_error(url: str, status: int, body: str) -> BackendError:
    message = f"{url} answered HTTP {status}: {body}"
    if status == 402:
        return PaymentRequired(message)
    if status in (408, 504):
        return BackendTimeout(message)
    if status >= 500:
        return ServerError(message)
    return LogicError(message)


def _excerpt(payload: Any) -> str:
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8", errors="replace")
    return str(payload)[:ERROR_BODY_EXCERPT_CHARS]
