"""`%u` patterns mean the same on both brokers (mosquitto's `pattern` lines, the embedded broker's `patterns`): with
the client rights written as patterns, an account with a password and no rules of its own submits only on its
own `task/submit/<name>` and reads only its own `reply/<name>`. (Provisioning writes each client's rules out
instead, so nodes and operators get no client rights; an ACL written by hand may use the patterns.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from integration.security.tenancy_scene import BROKERS, eventually, run
from secured import Fleet, broker_command, render_fleet, start_broker

from provisioning.acl import Account, amqtt_acl, client_patterns, mosquitto_acl
from shared.mqtt import FabricClient, unique_client_id
from shared.topics import Topics

SETTLE_S = 0.5


@pytest.fixture(params=BROKERS)
def patterned(request: pytest.FixtureRequest, tmp_path: Path, fabric: str) -> Iterator[Fleet]:
    """A rendered fleet whose broker runs an ACL of client patterns plus a router account's own rules."""
    fleet = render_fleet(tmp_path, fabric)
    topics = Topics(fabric)
    router = Account("hub", (f"{topics.prefix}/reply/+",), (topics.task_submissions(),))
    patterns = client_patterns(topics)
    (fleet.out / "broker" / "acl").write_text(mosquitto_acl([router], patterns))
    (fleet.out / "broker" / "amqtt-acl.yaml").write_text(yaml.safe_dump(amqtt_acl([router], patterns)))
    broker = start_broker(broker_command(request.param, fleet, "127.0.0.1"), "127.0.0.1", fleet.port)
    yield fleet
    broker.stop()


def test_percent_u_patterns_bind_an_account_to_its_own_topics(patterned: Fleet) -> None:
    run(_patterns(patterned))


async def _patterns(fleet: Fleet) -> None:
    topics = Topics(fleet.connection("hub").fabric)
    submitted: list[str] = []
    replied: list[str] = []
    router = FabricClient(fleet.connection("hub"), unique_client_id("hub"))
    await router.subscribe(topics.task_submissions(), lambda topic, payload: submitted.append(topic))
    await router.connect()
    alice = FabricClient(fleet.connection("alice"), unique_client_id("alice"))
    await alice.subscribe(topics.reply("alice"), lambda topic, payload: replied.append(topic))
    await alice.subscribe(topics.reply("bob"), lambda topic, payload: replied.append(topic))  # refused or empty
    await alice.connect()
    forger = FabricClient(fleet.connection("alice"), unique_client_id("alice-forger"))
    await forger.connect()
    with_denied = asyncio.ensure_future(
        forger.publish_confirmed(topics.client_task_submit("bob"), b"as bob", timeout=3)
    )
    await asyncio.gather(with_denied, return_exceptions=True)  # a denied publish may drop the forger
    await alice.publish_confirmed(topics.client_task_submit("alice"), b"as alice")
    await router.publish_confirmed(topics.reply("bob"), b"for bob")
    await router.publish_confirmed(topics.reply("alice"), b"for alice")
    await eventually(lambda: bool(submitted) and bool(replied), "alice's task and her reply")
    await asyncio.sleep(SETTLE_S)
    assert submitted == [topics.client_task_submit("alice")]
    assert replied == [topics.reply("alice")]
    for client in (router, alice, forger):
        await client.close()
