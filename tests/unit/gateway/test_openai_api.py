"""The pure half of the gateway: OpenAI requests into fabric tasks, answers into OpenAI objects, stop sequences."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fleet_gateway.openai_api import (
    BadRequest,
    ChatCompletionRequest,
    StopScanner,
    UnknownModel,
    completion,
    cut_at_stop,
    error_body,
    fabric_error_status,
    models_list,
    task_of,
)
from shared.messages import TaskAnswer

LIVE = {"n1-math", "n2-writer"}


def chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "symphony", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


def test_the_last_user_turn_is_the_task_and_the_earlier_turns_its_context() -> None:
    request = chat(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "I am "}, {"type": "text", "text": "Ann."}]},
            {"role": "assistant", "content": "Hi Ann."},
            {"role": "user", "content": "Who am I?"},
        ]
    )
    query, context, options = task_of(request, LIVE, 60.0)
    assert query == "Who am I?"
    assert context == ("System: Be brief.", "User: I am Ann.", "Assistant: Hi Ann.")
    assert options == {"deadline_s": 60.0}


def test_openai_and_symphony_options_become_task_options() -> None:
    request = chat(model="symphony-vote-5", max_completion_tokens=32, temperature=0.0, plan_k=2, top_l=4, deadline_s=9)
    _, _, options = task_of(request, LIVE, 60.0)
    assert options == {"cot_count": 5, "max_tokens": 32, "temperature": 0.0, "plan_k": 2, "top_l": 4, "deadline_s": 9}


def test_an_agent_model_is_a_single_direct_run_on_that_live_agent() -> None:
    _, _, options = task_of(chat(model="agent:n1-math", cot_count=5), LIVE, 60.0)
    assert (options["agent_id"], options["cot_count"], options["plan_k"]) == ("n1-math", 1, 1)
    with pytest.raises(UnknownModel, match="n9"):
        task_of(chat(model="agent:n9"), LIVE, 60.0)
    with pytest.raises(UnknownModel, match="gpt-4"):
        task_of(chat(model="gpt-4"), LIVE, 60.0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "last message"),
        ({"messages": [{"role": "user", "content": "  "}]}, "empty"),
        ({"n": 2}, "n = 1"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "image_url"),
    ],
)
def test_requests_the_fabric_cannot_serve_are_bad_requests(fields: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        task_of(chat(**fields), LIVE, 60.0)


@pytest.mark.parametrize("fields", [{"temperature": 3}, {"max_tokens": 0}, {"messages": []}, {"stop": list("abcde")}])
def test_out_of_range_fields_fail_validation(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        chat(**fields)


def test_stop_sequences_cut_the_text() -> None:
    assert cut_at_stop("one two three", ["three", "two"]) == ("one ", True)
    assert cut_at_stop("one", ["x"]) == ("one", False)


def test_the_stop_scanner_never_sends_a_stop_sequence_split_across_chunks() -> None:
    scanner = StopScanner(["END"])
    sent = [scanner.feed(piece) for piece in ["hello E", "N", "D and more"]]
    assert "".join(sent) + scanner.flush() == "hello " and scanner.stopped
    plain = StopScanner([])
    assert plain.feed("a") == "a" and plain.feed("b") == "b" and plain.flush() == ""


def test_a_completion_has_openai_fields_usage_and_the_trace() -> None:
    answer = TaskAnswer(
        task_id="t1", router_id="r1", answer="42", final_text="so 42", prompt_tokens=7, completion_tokens=3
    )
    body = completion(answer, "symphony", [], created=5)
    assert body["id"] == "chatcmpl-t1" and body["object"] == "chat.completion" and body["created"] == 5
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "so 42", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert body["symphony"]["answer"] == "42"


def test_models_errors_and_statuses() -> None:
    ids = [model["id"] for model in models_list(["b", "a"], 1)["data"]]
    assert ids == ["symphony", "symphony-vote-1", "symphony-vote-3", "symphony-vote-5", "agent:a", "agent:b"]
    assert error_body(404, "no", "model_not_found", "model") == {
        "error": {"message": "no", "type": "not_found_error", "param": "model", "code": "model_not_found"}
    }
    statuses = [fabric_error_status(c) for c in ("timeout", "no_agents", "busy", "bad_request", "internal_error")]
    assert statuses == [504, 503, 429, 400, 502]
