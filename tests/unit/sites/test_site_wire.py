"""The site on the wire: additive and optional, so a one-site fleet sends the bytes it always sent."""

from __future__ import annotations

import json

import pytest

from shared.errors import MessageError
from shared.messages import NodeBeacon, RouterPresence, TaskRequest, decode, encode
from shared.topics import site_agent_id, site_of_agent

UNSET = [
    NodeBeacon(node_id="n", epoch=1, instance_id="i", status="online"),
    RouterPresence(router_id="r", instance_id="i", epoch=1, status="online"),
    TaskRequest(task_id="t", query="q", reply_topic="symphony/f/reply/alice"),
]


@pytest.mark.parametrize("message", UNSET, ids=lambda message: type(message).__name__)
def test_an_unset_site_is_not_on_the_wire_and_a_set_one_round_trips(message: NodeBeacon) -> None:
    assert "site" not in json.loads(encode(message))
    sited = message.model_copy(update={"site": "east"})
    assert decode(encode(sited)).site == "east"


@pytest.mark.parametrize("site", ["a/b", "+", "#", "x\x00", "", "s" * 200])
def test_a_site_that_cannot_be_a_topic_level_is_refused(site: str) -> None:
    payload = json.loads(encode(UNSET[0]))
    with pytest.raises(MessageError):
        decode(json.dumps({**payload, "site": site}))


def test_a_site_agent_id_names_its_site() -> None:
    assert site_agent_id("east") == "site:east" and site_of_agent("site:east") == "east"
    with pytest.raises(ValueError):
        site_agent_id("s" * 124)  # the agent id would not fit a topic level
