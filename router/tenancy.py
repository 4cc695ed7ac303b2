"""Who asked, and what they may ask: the router's tenancy rules (pure; docs/tenancy.md).

A client submits on `task/submit/{account}`, a topic the broker lets only that account write to, so the topic
names who asked; MQTT 3.1.1 carries no identity the router could read otherwise. Everything a task sends back
follows from that account, never from the payload:

    task/submit/{account} ─► bind: reply topic = reply/{account}, events = task/{account}/{task}/events
                                    (a payload reply_topic or client_id naming anyone else: `forbidden`)
                          ─► admit: the account's caps (tasks in flight `rate_limited`; cot_count and plan_k
                                    `too_large`); its deadline capped to the router's `max_deadline_s`
                          ─► teach: gold answers, benchmark labels and requirements teach LinUCB, vote weights
                                    and priors only when the account is a teacher

On an anonymous fabric (the router logs in without a username: a loopback broker where anyone may read and
write anything) the legacy `task/submit` topic is still read, and its account is the reply topic's owner, as
before accounts existed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from router.planning import MAX_STEPS
from shared.config import AccountLimits, RouterSettings
from shared.messages import ErrorReply, TaskCancel, TaskRequest
from shared.topics import Topics


@dataclass(frozen=True)
class Tenancy:
    """The router's tenancy settings: teachers, the deadline cap, and per-account caps."""

    teachers: frozenset[str] = frozenset()
    max_deadline_s: float = 3600.0
    limits: AccountLimits = field(default_factory=AccountLimits)
    account_limits: Mapping[str, AccountLimits] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: RouterSettings) -> Tenancy:
        return cls(frozenset(settings.teachers), settings.max_deadline_s, settings.limits, settings.account_limits)

    def limits_of(self, account: str) -> AccountLimits:
        return self.account_limits.get(account, self.limits)

    def teaches(self, account: str) -> bool:
        """Whether the account's labels (gold answer, benchmark, requirements) may teach the router."""
        return account in self.teachers

    def max_steps(self, account: str) -> int:
        """The most steps a plan of the account's task may have."""
        return self.limits_of(account).steps or MAX_STEPS

    def refusal(self, request: TaskRequest, account: str, running: int) -> ErrorReply | None:
        """Why the account's task is refused under its caps (`running`: its tasks in flight now), or None."""
        limits = self.limits_of(account)
        options = request.options
        asked_and_caps = (("cot_count", options.cot_count, limits.cot_count), ("plan_k", options.plan_k, limits.plan_k))
        for name, asked, cap in asked_and_caps:
            if cap is not None and asked > cap:
                message = f"{name} {asked} is above this account's limit of {cap}"
                return ErrorReply(code="too_large", message=message, task_id=request.task_id)
        if limits.tasks is not None and running >= limits.tasks:
            message = f"this account already has {running} tasks in flight (its limit); retry when one is answered"
            return ErrorReply(code="rate_limited", message=message, task_id=request.task_id)
        return None

    def capped(self, request: TaskRequest) -> TaskRequest:
        """The request with its deadline (and run timeout) at most the router's `max_deadline_s`."""
        options = request.options
        deadline = min(options.deadline_s, self.max_deadline_s)
        run_timeout = None if options.run_timeout_s is None else min(options.run_timeout_s, deadline)
        if deadline == options.deadline_s and run_timeout == options.run_timeout_s:
            return request
        capped = options.model_copy(update={"deadline_s": deadline, "run_timeout_s": run_timeout})
        return request.model_copy(update={"options": capped})


def submitter(topics: Topics, topic: str, request: TaskRequest | TaskCancel, legacy: bool) -> str | None:
    """The account that submitted on `topic`: the topic's last level, or (legacy `task/submit`, read only on an
    anonymous fabric) the owner of the payload's reply topic; None when there is none to answer."""
    account = topics.submit_owner(topic)
    if account is not None or not legacy or topic != topics.task_submit():
        return account
    if isinstance(request, TaskRequest):
        return topics.reply_owner(request.reply_topic or "")
    return request.client_id or None


def bind(topics: Topics, request: TaskRequest, account: str) -> TaskRequest | ErrorReply:
    """The request as the account's own (reply topic and client id from the account), or `forbidden` when its
    payload names another reply topic or client: answers and events go only to the account that asked."""
    reply_topic = topics.reply(account)
    if request.reply_topic not in (None, reply_topic) or request.client_id not in ("", account):
        message = f"a task from {account!r} is answered on {reply_topic}; leave reply_topic and client_id out"
        return ErrorReply(code="forbidden", message=message, task_id=request.task_id)
    if request.reply_topic == reply_topic and request.client_id == account:
        return request
    return request.model_copy(update={"reply_topic": reply_topic, "client_id": account})


class AccountTasks:
    """How many tasks each account has in flight on this router (for the `tasks` cap)."""

    def __init__(self) -> None:
        self._running: Counter[str] = Counter()

    def running(self, account: str) -> int:
        return self._running[account]

    def started(self, account: str) -> None:
        self._running[account] += 1

    def finished(self, account: str) -> None:
        self._running[account] -= 1
        if self._running[account] <= 0:
            del self._running[account]

    def accounts(self) -> Iterable[str]:
        return self._running.keys()
