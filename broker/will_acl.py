"""Check the Will against the publish ACL on the embedded broker, as mosquitto does.

amqtt 0.12 checks every PUBLISH against `TopicAccessControlListPlugin`'s publish ACL, but not the Will a client
registers at CONNECT: the broker later publishes (and may retain) that Will for the client unchecked, so a node
could have its forged "offline" beacon land on another node's beacon topic. This authentication plugin refuses a
CONNECT whose Will topic the username may not publish to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amqtt.plugins.base import BaseAuthPlugin
from amqtt.plugins.topic_checking import TopicAccessControlListPlugin
from amqtt.session import Session


class WillTopicACLPlugin(BaseAuthPlugin):
    """Refuse a CONNECT whose Will topic is outside the username's publish ACL; no opinion without a Will."""

    async def authenticate(self, *, session: Session) -> bool | None:
        if not session.will_flag or not session.will_topic:
            return None  # nothing to check: leave the decision to the password plugin
        allowed = self.config.publish_acl.get(session.username or "anonymous", [])
        return any(TopicAccessControlListPlugin.topic_ac(session.will_topic, pattern) for pattern in allowed)

    @dataclass
    class Config:
        publish_acl: dict[str, list[str]] = field(default_factory=dict)
