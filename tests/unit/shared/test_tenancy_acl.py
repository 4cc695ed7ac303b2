"""The submit topic that names its account, and `%u` ACL patterns as the embedded broker reads them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from broker.embedded import EmbeddedBrokerConfig, TopicACL, amqtt_config
from provisioning.acl import Account, amqtt_acl, client_patterns, mosquitto_acl
from shared.errors import ConfigError, TopicError
from shared.topics import Topics

T = Topics("f1")


@pytest.mark.parametrize(
    ("topic", "owner"),
    [
        ("symphony/f1/task/submit/alice", "alice"),
        ("symphony/f1/task/submit", None),  # the legacy topic names no account
        ("symphony/f1/task/submit/", None),
        ("symphony/f1/task/submit/a/b", None),
        ("symphony/f2/task/submit/alice", None),
        ("symphony/f1/reply/alice", None),
    ],
)
def test_the_submit_topic_names_its_account(topic: str, owner: str | None) -> None:
    assert T.submit_owner(topic) == owner


def test_a_submit_topic_is_built_only_for_a_valid_account() -> None:
    assert T.client_task_submit("alice") == "symphony/f1/task/submit/alice"
    assert T.task_submissions() == "symphony/f1/task/submit/+"
    for hostile in ("+", "#", "a/b", "", "a\x00"):
        with pytest.raises(TopicError):
            T.client_task_submit(hostile)


def test_patterns_are_written_out_for_each_username_but_never_for_a_wildcard_or_slash(tmp_path: Path) -> None:
    router = Account("hub", ("symphony/f1/reply/+",), ("symphony/f1/task/submit/+",))
    path = tmp_path / "acl.yaml"
    path.write_text(yaml.safe_dump(amqtt_acl([router], client_patterns(T))))
    acl = TopicACL.load(path).for_usernames(["alice", "hub", "a/b", "x+"])
    assert acl.publish["alice"] == ["symphony/f1/task/submit/alice"]
    assert acl.subscribe["alice"] == ["symphony/f1/reply/alice", "symphony/f1/task/alice/+/events"]
    assert acl.publish["hub"] == ["symphony/f1/reply/+", "symphony/f1/task/submit/hub"]  # as mosquitto: everyone
    assert "a/b" not in acl.publish and "x+" not in acl.publish
    text = mosquitto_acl([router], client_patterns(T))
    assert "pattern write symphony/f1/task/submit/%u\n" in text and "pattern read symphony/f1/reply/%u\n" in text


def test_the_embedded_broker_reads_the_usernames_of_its_password_file(tmp_path: Path) -> None:
    passwords = tmp_path / "passwd"
    passwords.write_text("# comment\nalice:$argon2id$hash\n")
    acl = TopicACL(patterns={"publish": ["p/%u"]})
    config = amqtt_config(EmbeddedBrokerConfig(password_file=passwords, acl=acl))
    assert config["plugins"]["amqtt.plugins.topic_checking.TopicAccessControlListPlugin"]["publish_acl"] == {
        "alice": ["p/alice"]
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"patterns": {"write": ["x"]}}))
    with pytest.raises(ConfigError):
        TopicACL.load(bad)
