"""The seam between the agent runtime and a model: messages, options, results, errors.

Every backend (llama.cpp, MLX, an OpenAI-compatible server, the echo backend) implements the
``Backend`` protocol and translates the errors of the library underneath into this tree (defined in
``shared.errors``, under ``SymphonyError``)::

    BackendError                 root; ``kind`` is the wire error kind carried in ``RunResult``
    ├── BackendTimeout           "timeout"           the model or server did not answer in time
    ├── BackendUnavailable       "backend_error"     model file missing/corrupt, library not installed
    ├── PaymentRequired          "payment_required"  HTTP 402 from a paid endpoint
    ├── ServerError              "server_error"      HTTP 5xx or an unexpected failure inside the engine
    └── LogicError               "logic_error"       bad request (other 4xx) or a malformed reply

Errors that cross the network travel as messages carrying ``kind``, never as pickled exceptions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, TypedDict, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

# The error tree lives in `shared.errors` (one vocabulary for the kit); backends import it from here.
from shared.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    LogicError,
    PaymentRequired,
    ServerError,
)
from shared.messages import ConstraintKind, OutputConstraint, is_constraint_kind

__all__ = [
    "Backend",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "ChatMessage",
    "Generation",
    "GenerationOptions",
    "LogicError",
    "PaymentRequired",
    "ServerError",
    "StreamingBackend",
    "TokenSink",
    "constraint_kinds",
    "is_blocking",
    "last_user_message",
    "plain_prompt",
    "refuse_constraint",
]

Role = Literal["system", "user", "assistant"]


class ChatMessage(TypedDict):
    """One turn of a chat conversation, in the OpenAI message shape."""

    role: Role
    content: str


class GenerationOptions(BaseModel):
    """Sampling options for one generation; unknown keys are rejected so typos fail loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.7, ge=0.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    constraint: OutputConstraint | None = None  # only backends announcing its kind in `constraint_kinds` get one


class Generation(BaseModel):
    """The result of one generation: the text, token usage, wall-clock latency and who produced it."""

    model_config = ConfigDict(frozen=True)

    text: str
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    latency_s: float = Field(ge=0.0)
    backend: str
    model: str = ""


@runtime_checkable
class Backend(Protocol):
    """A loaded model that turns chat messages into text.

    ``generate`` is synchronous and may block for seconds; the agent runtime calls it from a worker
    thread. Implementations serialise concurrent calls themselves when the engine is not thread-safe. A
    backend whose calls return at once (no model, no I/O, no sleep) may say so with ``blocking = False``
    (see `is_blocking`).
    """

    name: str
    model: str
    supports_chat_template: bool
    device: str

    def generate(self, messages: list[ChatMessage], options: GenerationOptions) -> Generation:
        """Generate a reply to ``messages``; raise a ``BackendError`` subclass on failure."""
        ...

    def close(self) -> None:
        """Release the model and any connections; calling it twice is harmless."""
        ...


TokenSink = Callable[[str], bool]
"""Receives each piece of text as it is generated; returns False to stop the generation (a cancel)."""


@runtime_checkable
class StreamingBackend(Backend, Protocol):
    """A backend that hands out its text as it generates it, and stops when the sink asks."""

    def stream(self, messages: list[ChatMessage], options: GenerationOptions, sink: TokenSink) -> Generation:
        """Like ``generate``, calling ``sink`` with each new piece of text; a False return stops the run early.

        The returned ``Generation`` holds the text produced so far (all of it, or up to the stop).
        """
        ...


def is_blocking(backend: object) -> bool:
    """Whether a call may block (its `blocking` attribute; True when absent): a model, a server, a sleep.

    The agent runtime calls a backend that blocks from a worker thread; one that returns at once (the echo
    backend without a delay) is called on the event loop, which saves a thread hop and a loop wake-up per run.
    """
    return bool(getattr(backend, "blocking", True))


def constraint_kinds(backend: object) -> tuple[ConstraintKind, ...]:
    """The output constraints a backend honours while decoding (its `constraint_kinds` attribute; none when absent).

    Backends are plugins: one written before constraints existed announces none and is never sent a constraint;
    a kind the wire does not know (a plugin written for a later kit) is left out, as no request can carry it.
    """
    return tuple(kind for kind in getattr(backend, "constraint_kinds", ()) if is_constraint_kind(kind))


def refuse_constraint(backend_name: str, options: GenerationOptions, supported: tuple[str, ...] = ()) -> None:
    """Raise LogicError when `options` carries a constraint this backend cannot honour (never decode it freely)."""
    constraint = options.constraint
    if constraint is not None and constraint.type not in supported:
        kinds = ", ".join(supported) or "none"
        raise LogicError(
            f"the {backend_name} backend cannot honour a {constraint.type} constraint (it supports: {kinds})"
        )


def last_user_message(messages: list[ChatMessage]) -> str:
    """Return the content of the last user message, or an empty string when there is none."""
    for message in reversed(messages):
        if message["role"] == "user":
            return message["content"]
    return ""


def plain_prompt(messages: list[ChatMessage]) -> str:
    """Render messages as a plain "System:/User:/Assistant:" transcript for models without a chat template."""
    labels = {"system": "System", "user": "User", "assistant": "Assistant"}
    lines = [f"{labels[message['role']]}: {message['content']}" for message in messages]
    lines.append("Assistant:")
    return "\n".join(lines)


PLAIN_PROMPT_STOPS = ["\nUser:", "\nSystem:"]
"""Stop sequences for the plain transcript, so a base model does not write the next turn itself."""
