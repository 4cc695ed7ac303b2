"""The client's own MQTT topic matcher agrees with paho's on the cases of MQTT 3.1.1 §4.7."""

from __future__ import annotations

import paho.mqtt.client as paho
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.mqtt import topic_matches

CASES = [
    ("a/b", "a/b", True),
    ("a/b", "a/c", False),
    ("a/+", "a/b", True),
    ("a/+", "a/b/c", False),
    ("a/+", "a", False),
    ("a/#", "a", True),
    ("a/#", "a/b/c", True),
    ("#", "a/b", True),
    ("+/+", "/x", True),
    ("+", "", True),
    ("a/+/c", "a//c", True),
    ("#", "$SYS/broker", False),
    ("+/broker", "$SYS/broker", False),
    ("$SYS/#", "$SYS/broker", True),
    ("symphony/f/beacon/+", "symphony/f/beacon/node-1", True),
    ("symphony/f/task/+/events", "symphony/f/task/t1/events", True),
    ("symphony/f/task/+/events", "symphony/f/task/t1/other", False),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), CASES)
def test_topic_matches_the_standard_cases(topic_filter: str, topic: str, expected: bool):
    assert topic_matches(topic_filter, topic) is expected
    assert paho.topic_matches_sub(topic_filter, topic) is expected


LEVEL = st.sampled_from(["a", "b", "", "$x"])
FILTER_LEVEL = st.sampled_from(["a", "b", "", "+", "$x"])


@given(
    st.lists(FILTER_LEVEL, min_size=1, max_size=4),
    st.booleans(),
    st.lists(LEVEL, min_size=1, max_size=5),
)
def test_topic_matches_agrees_with_paho(filter_levels: list[str], hash_tail: bool, levels: list[str]):
    topic_filter = "/".join([*filter_levels, "#"] if hash_tail else filter_levels)
    topic = "/".join(levels)
    assert topic_matches(topic_filter, topic) == paho.topic_matches_sub(topic_filter, topic)
