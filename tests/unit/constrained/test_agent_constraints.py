"""An agent under constraints: the beacon announces them, echo answers validly, two phases give a typed answer,
and a backend that cannot constrain refuses instead of decoding freely."""

from __future__ import annotations

import asyncio
import json

from edge_agent.backends.base import ChatMessage, Generation, GenerationOptions
from edge_agent.backends.echo import EchoBackend
from edge_agent.runtime.worker import AgentProfile, AgentWorker
from shared.constraints import answer_type_constraint
from shared.messages import OutputConstraint, RunRequest, RunResult

PROFILE = AgentProfile("a-1", "generalist", "You help.", ("math",), 1, 4, 64, 0.0, 1.0)


class Recording:
    """A backend that says a fixed text and records every conversation and constraint it was given."""

    name, model, device, supports_chat_template = "recording", "r", "cpu", True
    constraint_kinds = ("regex",)

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.calls: list[tuple[list[ChatMessage], GenerationOptions]] = []

    def generate(self, messages: list[ChatMessage], options: GenerationOptions) -> Generation:
        self.calls.append((messages, options))
        text = self.texts[len(self.calls) - 1]
        return Generation(text=text, prompt_tokens=3, completion_tokens=2, latency_s=0.0, backend="recording")

    def close(self) -> None:
        pass


class Unconstrained(Recording):
    constraint_kinds = ()


def run(worker: AgentWorker, request: RunRequest) -> RunResult:
    async def go() -> RunResult:
        worker.admit()
        return await worker.run(request)

    return asyncio.run(go())


def request(**fields: object) -> RunRequest:
    return RunRequest(
        dispatch_id="d", task_id="t", agent_id="a-1", subtask="What is 6 x 7?", reply_topic="x/y", **fields
    )


def test_the_beacon_says_which_constraints_the_backend_honours() -> None:
    assert AgentWorker(PROFILE, EchoBackend(), "n").info().constraints == ("json_schema", "regex", "choice")
    assert AgentWorker(PROFILE, Unconstrained([]), "n").info().constraints == ()


def test_echo_gives_valid_json_under_a_schema() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    constraint = OutputConstraint(type="json_schema", json_schema=schema)
    result = run(AgentWorker(PROFILE, EchoBackend(), "n"), request(constraint=constraint))
    assert result.ok and json.loads(result.text) == {"city": "What is 6 x 7?"}


def test_two_phases_reason_freely_then_answer_under_the_constraint() -> None:
    backend = Recording(["6 x 7 is 42 because ...", "42"])
    number = answer_type_constraint("number")
    result = run(AgentWorker(PROFILE, backend, "n"), request(answer_constraint=number))
    assert result.ok and result.answer == "42"
    assert result.text == "6 x 7 is 42 because ...\nFinal answer: 42"
    (first, free), (second, constrained) = backend.calls
    assert free.constraint is None and constrained.constraint == number
    assert second[: len(first)] == first and second[len(first)] == {"role": "assistant", "content": backend.texts[0]}
    assert "a number only" in second[-1]["content"] and "What is 6 x 7?" in second[-1]["content"]
    assert result.completion_tokens == 4


def test_an_agent_refuses_a_constraint_its_backend_cannot_honour() -> None:
    backend = Unconstrained(["free text"])
    result = run(AgentWorker(PROFILE, backend, "n"), request(answer_constraint=answer_type_constraint("number")))
    assert result.error == "backend_error" and "cannot honour a regex constraint" in result.error_message
    assert backend.calls == []  # never decoded freely in its place
