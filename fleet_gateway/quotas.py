"""Per-key quotas and usage of the gateway (pure: the clock is an argument, nothing here does I/O).

    admit(account)       before the body is read: concurrent tasks, requests per minute, tokens per day → 429
    cap(account, opts)   after parsing: cot_count / plan_k above the key's cap → 400, deadline cut to the cap
    record_tokens(...)   after the answer: the day's token count
    release(account)     when the request's task has ended (answered, failed, or the caller went away)

A key without a `quota:` entry is only counted, never refused (the keys file stays backward compatible).
Windows are rolling: the last 60 s for requests (one timestamp per admitted request, at most the quota kept),
the last 24 h for tokens (one bucket per minute, at most 1,440 kept).
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.errors import SymphonyError
from shared.http_auth import ClientAccount, KeyQuota
from shared.messages import TaskOptions

MINUTE_S = 60.0
DAY_S = 86_400.0
ANONYMOUS = "anonymous"  # the label of callers without a key (a gateway serving loopback anonymously)
CAPPED_OPTIONS = (("cot_count", "max_cot_count"), ("plan_k", "max_plan_k"))


class QuotaExceeded(SymphonyError):
    """A key is over one of its quotas (429 with Retry-After)."""

    def __init__(self, reason: str, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = max(1, math.ceil(retry_after_s))


class CapExceeded(SymphonyError):
    """A request asks for more than its key may (400: asking again does not help)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class KeyUsage:
    """What one key has used: counters for reports and metrics, windows for the quotas."""

    label: str
    client: str
    quota: KeyQuota = field(default_factory=KeyQuota)
    in_flight: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    recent_requests: deque[float] = field(default_factory=deque)
    token_buckets: deque[list[float]] = field(default_factory=deque)  # [minute start, tokens], oldest first

    def tokens_today(self, now: float) -> int:
        self.expire(now)
        return int(sum(tokens for _, tokens in self.token_buckets))

    def requests_this_minute(self, now: float) -> int:
        self.expire(now)
        return len(self.recent_requests)

    def expire(self, now: float) -> None:
        while self.recent_requests and self.recent_requests[0] <= now - MINUTE_S:
            self.recent_requests.popleft()
        while self.token_buckets and self.token_buckets[0][0] <= now - DAY_S:
            self.token_buckets.popleft()


class QuotaBook:
    """Usage and quotas of every key seen since the gateway started."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.keys: dict[str, KeyUsage] = {}

    def usage(self, account: ClientAccount | None) -> KeyUsage:
        label, client = (ANONYMOUS, ANONYMOUS) if account is None else (account.label, account.client)
        usage = self.keys.get(label)
        if usage is None:
            usage = self.keys[label] = KeyUsage(label, client)
        if account is not None:
            usage.quota = account.quota  # a reloaded keys file may have changed it
        return usage

    def admit(self, account: ClientAccount | None) -> KeyUsage:
        """Count a new task in, or raise QuotaExceeded (counted as refused) without counting it."""
        usage = self.usage(account)
        try:
            self._check(usage, self.clock())
        except QuotaExceeded as refusal:
            usage.refused[refusal.reason] += 1
            raise
        usage.in_flight += 1
        usage.requests += 1
        usage.recent_requests.append(self.clock())
        return usage

    def release(self, account: ClientAccount | None) -> None:
        usage = self.usage(account)
        usage.in_flight = max(0, usage.in_flight - 1)

    def record_tokens(self, account: ClientAccount | None, prompt: int, completion: int) -> None:
        usage = self.usage(account)
        usage.prompt_tokens += prompt
        usage.completion_tokens += completion
        minute = self.clock() // MINUTE_S * MINUTE_S
        if usage.token_buckets and usage.token_buckets[-1][0] == minute:
            usage.token_buckets[-1][1] += prompt + completion
        else:
            usage.token_buckets.append([minute, float(prompt + completion)])
        usage.expire(self.clock())

    def refuse(self, account: ClientAccount | None, reason: str) -> None:
        """Count a refusal decided elsewhere (a cap)."""
        self.usage(account).refused[reason] += 1

    def _check(self, usage: KeyUsage, now: float) -> None:
        quota = usage.quota
        if quota.concurrent_tasks is not None and usage.in_flight >= quota.concurrent_tasks:
            raise QuotaExceeded(
                "concurrent_tasks",
                f"this key may have {quota.concurrent_tasks} task(s) in flight at once; wait for one to finish",
                1,
            )
        if quota.requests_per_minute is not None and usage.requests_this_minute(now) >= quota.requests_per_minute:
            retry = usage.recent_requests[0] + MINUTE_S - now
            raise QuotaExceeded(
                "requests_per_minute", f"this key may send {quota.requests_per_minute} request(s) per minute", retry
            )
        if quota.tokens_per_day is not None and usage.tokens_today(now) >= quota.tokens_per_day:
            raise QuotaExceeded(
                "tokens_per_day",
                f"this key has used its {quota.tokens_per_day} tokens of the last 24 hours",
                _token_retry_s(usage, quota.tokens_per_day, now),
            )


def _token_retry_s(usage: KeyUsage, limit: int, now: float) -> float:
    """Seconds until enough of the oldest buckets leave the 24-hour window to bring the count under `limit`."""
    total = sum(tokens for _, tokens in usage.token_buckets)
    for minute, tokens in usage.token_buckets:
        total -= tokens
        if total < limit:
            return minute + DAY_S - now
    return MINUTE_S


def cap_options(account: ClientAccount | None, options: dict[str, Any], operator_deadline_s: float) -> dict[str, Any]:
    """The task options with the key's caps applied: deadline cut, cot_count/plan_k over the cap refused.

    The operator's deadline (`--deadline`) caps every caller's deadline_s; a key's max_deadline_s cuts it further.
    A cot_count or plan_k the caller did not ask for is the fabric's default, cut to the cap silently.
    """
    quota = account.quota if account is not None else KeyQuota()
    capped = dict(options)
    deadline = min(float(capped.get("deadline_s", operator_deadline_s)), operator_deadline_s)
    if quota.max_deadline_s is not None:
        deadline = min(deadline, quota.max_deadline_s)
    capped["deadline_s"] = deadline
    for option, limit_name in CAPPED_OPTIONS:
        limit = getattr(quota, limit_name)
        if limit is None:
            continue
        if option in capped and capped[option] > limit:
            raise CapExceeded(f"this key may ask for {option} up to {limit} (asked {capped[option]})", option)
        if option not in capped and TaskOptions.model_fields[option].default > limit:
            capped[option] = limit
    return capped


def report(usage: KeyUsage, now: float) -> dict[str, Any]:
    """The JSON of `GET /v1/usage`: the caller's own counters, quotas and what is left of them."""
    quota = usage.quota
    limits = {name: getattr(quota, name) for name in quota.__dataclass_fields__}
    return {
        "object": "usage",
        "key": usage.label,
        "client": usage.client,
        "in_flight": usage.in_flight,
        "requests": usage.requests,
        "requests_last_minute": usage.requests_this_minute(now),
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "tokens_last_24h": usage.tokens_today(now),
        "refused": dict(usage.refused),
        "quota": limits,
    }
