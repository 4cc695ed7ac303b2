"""Ids and topics as MQTT allows them: what may be one topic level, and what a client may publish on.

The one place that says which strings are fit for a topic (DESIGN §7: no code point MQTT forbids, no wildcard in
an id). `shared.topics` builds topics from checked ids; `shared.messages` checks the ids and reply topics that
arrive inside messages.
"""

from __future__ import annotations

import re

from shared.errors import TopicError

MAX_ID_LENGTH = 128
MAX_TOPIC_LENGTH = 1024
_FORBIDDEN_CHARACTERS = frozenset("+#/")


def _forbidden_code_points() -> str:
    """The code points MQTT (3.1.1 §1.5.3, 5.0 §1.5.4) forbids or advises against in a topic or client id, as the
    body of a regex character class: C0 and C1 controls (mosquitto disconnects a client publishing on a topic
    with U+0085), surrogates (not UTF-8 at all), and the Unicode non-characters U+FDD0..U+FDEF and U+xFFFE/U+xFFFF
    in every plane."""
    ranges = [r"\x00-\x1f", r"\x7f-\x9f", r"\ud800-\udfff", r"\ufdd0-\ufdef"]
    ranges += [rf"\U{plane:04x}fffe\U{plane:04x}ffff" for plane in range(17)]
    return "".join(ranges)


_FORBIDDEN = _forbidden_code_points()
_VALID_ID = re.compile(rf"[^+#/{_FORBIDDEN}]{{1,{MAX_ID_LENGTH}}}")
_CONTROL_CHARACTER = re.compile(rf"[{_FORBIDDEN}]")  # named for the C0 controls it began with; now all of MQTT's


def _is_plain_ascii_id(value: str) -> bool:
    """The common id, checked in C: printable ASCII (no C0 control, no DEL: the only code points of MQTT's
    forbidden set below U+0080), 1..MAX_ID_LENGTH long, no topic syntax. The regex below says the same of every
    string, but its character class (ranges in all 17 planes) costs a few microseconds per id, and every message
    the fabric decodes or builds checks several ids."""
    return (
        value.isascii()
        and value.isprintable()
        and 0 < len(value) <= MAX_ID_LENGTH
        and "+" not in value
        and "#" not in value
        and "/" not in value
    )


def is_valid_id(value: str) -> bool:
    """Whether `value` can be one topic level (what `validate_id` accepts)."""
    return _VALID_ID.fullmatch(value) is not None


def validate_id(value: str, what: str = "id") -> str:
    """Return `value` if it can be one topic level, else raise `TopicError` saying why."""
    if isinstance(value, str) and (_is_plain_ascii_id(value) or _VALID_ID.fullmatch(value)):
        return value
    if not isinstance(value, str) or not value:
        raise TopicError(f"{what} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise TopicError(f"{what} is longer than {MAX_ID_LENGTH} characters")
    bad = sorted({character for character in value if character in _FORBIDDEN_CHARACTERS})
    if bad:
        raise TopicError(f"{what} {value!r} contains {' '.join(bad)} (not allowed in a topic level)")
    raise TopicError(f"{what} {value[:40]!r} contains control characters or non-characters (MQTT forbids them)")


def validate_publish_topic(value: str) -> str:
    """Return `value` if a client may publish on it (no wildcards, not empty, none of the code points MQTT forbids)."""
    if not value or len(value) > MAX_TOPIC_LENGTH:
        raise TopicError(f"topic must have 1..{MAX_TOPIC_LENGTH} characters")
    if "+" in value or "#" in value:
        raise TopicError(f"topic {value!r} contains a wildcard")
    plain = value.isascii() and value.isprintable()  # as in `_is_plain_ascii_id`: no forbidden code point, in C
    if not plain and _CONTROL_CHARACTER.search(value):
        raise TopicError("topic contains control characters or non-characters (MQTT forbids them)")
    return value
