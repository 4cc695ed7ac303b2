"""What a caller may read of a failure: the router's words for 4xx, timeouts and no agents; nothing internal."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fleet_gateway.public_errors import fabric_failure, invalid_options, scrub
from shared.messages import TaskOptions


@pytest.mark.parametrize(
    ("code", "status", "message", "shown"),
    [
        ("timeout", 504, "no answer within the deadline of 5 s", "no answer within the deadline of 5 s"),
        ("no_agents", 503, "every agent failed on subtask 1", "every agent failed on subtask 1"),
        ("rate_limited", 429, "this account may send 5 tasks per minute", "this account may send 5 tasks per minute"),
        ("bad_request", 400, "reply topic mqtt://10.0.0.2:1883/x refused", "reply topic <address> refused"),
        ("internal_error", 502, "KeyError: '/var/lib/router.json'", "the fabric could not answer (internal_error)"),
        ("something_new", 502, "OSError at 192.168.1.4:1883", "the fabric could not answer (something_new)"),
    ],
)
def test_fabric_failures_show_the_callers_part_only(code: str, status: int, message: str, shown: str) -> None:
    assert fabric_failure(code, message, status).startswith(shown)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cannot reach mqtt://ops:pw@10.0.0.2:1883 now", "cannot reach <address> now"),
        ("at 10.0.0.2:1883", "at <address>"),
        ("at [fe80::1]:1883", "at <address>"),
        ("see https://example.com/x?y=1", "see <address>"),
        ("x" * 1000, "x" * 300),
    ],
)
def test_scrub_cuts_addresses_and_length(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_invalid_options_name_the_field_without_the_input_or_links() -> None:
    with pytest.raises(ValidationError) as error:
        TaskOptions(cot_count=99)
    message = invalid_options(error.value)
    assert message.startswith("invalid options: cot_count: ") and "99" not in message and "pydantic" not in message
    assert invalid_options(ValueError("secret /etc/path")) == "invalid options"
