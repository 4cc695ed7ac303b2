"""A deterministic backend that echoes the last user message; used by tests and fabric benchmarks."""

from __future__ import annotations

import hashlib
import json
import time

from edge_agent.backends.base import (
    BackendUnavailable,
    ChatMessage,
    Generation,
    GenerationOptions,
    TokenSink,
    last_user_message,
)
from shared.constraints import example_output, violation_free


class EchoBackend:
    """Reply with ``echo: <last user message>`` and a deterministic final-answer line.

    The answer is ``answer`` when given, otherwise a short digest of the user message, so equal
    inputs always give equal outputs (and votes agree) while different inputs differ. Token counts
    are word counts. ``delay_s`` simulates model latency for fabric benchmarks.
    """

    supports_chat_template = True
    device = "cpu"
    constraint_kinds = ("json_schema", "regex", "choice")

    def __init__(self, delay_s: float = 0.0, answer: str | None = None, model: str = "echo") -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        self.name = "echo"
        self.model = model
        self.delay_s = delay_s
        self.blocking = delay_s > 0  # without a delay a call returns at once: the runtime skips the thread
        self.answer = answer
        self._closed = False

    def generate(self, messages: list[ChatMessage], options: GenerationOptions) -> Generation:
        """Return the echo reply for ``messages``; ``options.max_tokens`` caps the echoed words."""
        if self._closed:
            raise BackendUnavailable("the echo backend was closed")
        started = time.perf_counter()
        if self.delay_s:
            time.sleep(self.delay_s)
        user_text = last_user_message(messages)
        text = self._reply(user_text, options)
        prompt_words = sum(len(message["content"].split()) for message in messages)
        return Generation(
            text=text,
            prompt_tokens=prompt_words,
            completion_tokens=len(text.split()),
            latency_s=time.perf_counter() - started,
            backend=self.name,
            model=self.model,
        )

    def stream(self, messages: list[ChatMessage], options: GenerationOptions, sink: TokenSink) -> Generation:
        """The same reply word by word, ``delay_s`` spread over the words; stops when ``sink`` returns False."""
        if self._closed:
            raise BackendUnavailable("the echo backend was closed")
        started = time.perf_counter()
        user_text = last_user_message(messages)
        words = self._reply(user_text, options).split(" ")
        pause = self.delay_s / len(words)
        produced: list[str] = []
        for index, word in enumerate(words):
            if pause:
                time.sleep(pause)
            piece = word if index == 0 else " " + word
            produced.append(piece)
            if not sink(piece):
                break
        text = "".join(produced)
        return Generation(
            text=text,
            prompt_tokens=sum(len(message["content"].split()) for message in messages),
            completion_tokens=len(text.split()),
            latency_s=time.perf_counter() - started,
            backend=self.name,
            model=self.model,
        )

    def _reply(self, user_text: str, options: GenerationOptions) -> str:
        """The echo reply; under a constraint, the answer itself when it satisfies it, else a small valid output."""
        if options.constraint is not None:
            task = user_text.rsplit("Task: ", 1)[-1].strip()  # a JSON answer's strings hold the task (build_messages)
            for candidate in (*_json_objects(task), self._final_answer(user_text)):  # echo what already fits
                if violation_free(candidate, options.constraint):
                    return candidate
            return example_output(options.constraint, fill=task)
        echoed_words = user_text.split()[: options.max_tokens]
        return f"echo: {' '.join(echoed_words)}\nFinal answer: {self._final_answer(user_text)}"

    def _final_answer(self, user_text: str) -> str:
        if self.answer is not None:
            return self.answer
        return hashlib.sha256(user_text.encode("utf-8")).hexdigest()[:8]

    def close(self) -> None:
        """Mark the backend closed; later calls raise ``BackendUnavailable``."""
        self._closed = True


def _json_objects(text: str) -> list[str]:
    """The JSON objects written in a text, in order (what echo repeats when a JSON answer is asked of it)."""
    decoder, found, position = json.JSONDecoder(), [], text.find("{")
    while position != -1:
        try:
            _, end = decoder.raw_decode(text, position)
        except ValueError:
            position = text.find("{", position + 1)
            continue
        found.append(text[position:end])
        position = text.find("{", end)
    return found
