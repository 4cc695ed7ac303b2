"""Per-key quotas (pure, with a fake clock), the keys file's `quota:` entries and the Host rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet_gateway.quotas import CapExceeded, QuotaBook, QuotaExceeded, cap_options, report
from shared.errors import ConfigError
from shared.http_auth import ClientAccount, KeyQuota, host_allowed, load_keys

KEY = "sk-symphony-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def account(**quota: float) -> ClientAccount:
    return ClientAccount("laptop", quota=KeyQuota(**quota))  # type: ignore[arg-type]


def test_a_key_without_quota_is_counted_but_never_refused() -> None:
    book = QuotaBook(Clock())
    for _ in range(1000):
        book.admit(account())
    book.record_tokens(account(), 10**9, 10**9)
    usage = book.admit(account())
    assert (usage.requests, usage.in_flight, usage.prompt_tokens) == (1001, 1001, 10**9)


def test_concurrent_tasks_are_refused_until_one_is_released() -> None:
    book = QuotaBook(Clock())
    key = account(concurrent_tasks=2)
    book.admit(key)
    book.admit(key)
    with pytest.raises(QuotaExceeded) as refused:
        book.admit(key)
    assert (refused.value.reason, refused.value.retry_after_s) == ("concurrent_tasks", 1)
    book.release(key)
    book.admit(key)
    assert book.usage(key).refused == {"concurrent_tasks": 1}


def test_requests_per_minute_roll_and_say_when_to_retry() -> None:
    clock = Clock()
    book = QuotaBook(clock)
    key = account(requests_per_minute=3)
    for step in range(3):
        clock.now += 10 * step
        book.admit(key)
        book.release(key)
    with pytest.raises(QuotaExceeded) as refused:
        book.admit(key)
    assert refused.value.reason == "requests_per_minute" and refused.value.retry_after_s == 30  # first at t+0
    clock.now += 30
    book.admit(key)


def test_tokens_per_day_refuse_once_spent_until_the_oldest_minute_leaves_the_window() -> None:
    clock = Clock()
    book = QuotaBook(clock)
    key = account(tokens_per_day=100)
    book.admit(key)
    book.record_tokens(key, 60, 50)  # one task may go past the quota; the next is refused
    book.release(key)
    with pytest.raises(QuotaExceeded) as refused:
        book.admit(key)
    assert refused.value.reason == "tokens_per_day" and 86_340 <= refused.value.retry_after_s <= 86_400
    clock.now += 86_400
    book.admit(key)


@pytest.mark.parametrize(
    ("quota", "asked", "expected"),
    [
        ({}, {"deadline_s": 3600.0}, {"deadline_s": 120.0}),  # the operator's --deadline caps every caller
        ({"max_deadline_s": 30.0}, {"deadline_s": 60.0}, {"deadline_s": 30.0}),
        ({"max_deadline_s": 30.0}, {"deadline_s": 5.0}, {"deadline_s": 5.0}),
        ({"max_cot_count": 2}, {}, {"cot_count": 2}),  # the fabric's default (3) cut to the cap
        ({"max_cot_count": 5}, {}, {}),
        ({"max_cot_count": 2}, {"cot_count": 2}, {"cot_count": 2}),
        ({"max_plan_k": 2}, {"plan_k": 1}, {"plan_k": 1}),
    ],
)
def test_caps_cut_deadlines_and_defaults(quota: dict[str, float], asked: dict[str, float], expected: dict) -> None:
    capped = cap_options(account(**quota), {"deadline_s": 120.0, **asked}, 120.0)
    assert capped == {"deadline_s": 120.0, **expected}


@pytest.mark.parametrize(("option", "cap"), [("cot_count", "max_cot_count"), ("plan_k", "max_plan_k")])
def test_asking_for_more_than_the_cap_is_refused(option: str, cap: str) -> None:
    with pytest.raises(CapExceeded, match=f"{option} up to 2") as refused:
        cap_options(account(**{cap: 2}), {"deadline_s": 120.0, option: 3}, 120.0)
    assert refused.value.param == option


def test_the_usage_report_shows_counters_and_quota() -> None:
    clock = Clock()
    book = QuotaBook(clock)
    key = ClientAccount("laptop", quota=KeyQuota(tokens_per_day=1000), name="laptop-ci")
    book.admit(key)
    book.record_tokens(key, 7, 3)
    data = report(book.usage(key), clock.now)
    assert data["key"] == "laptop-ci" and data["client"] == "laptop"
    assert (data["requests"], data["in_flight"], data["tokens_last_24h"]) == (1, 1, 10)
    assert data["quota"]["tokens_per_day"] == 1000 and data["quota"]["concurrent_tasks"] is None


def test_the_keys_file_takes_quotas_and_names(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(
        f"keys:\n  - key: {KEY}\n    client: laptop\n    name: ci\n    quota:\n"
        "      concurrent_tasks: 2\n      requests_per_minute: 30\n      max_deadline_s: 12.5\n"
        f"  - key: {KEY}x\n    client: phone\n"
    )
    keys = load_keys(path)
    assert keys[KEY].quota == KeyQuota(concurrent_tasks=2, requests_per_minute=30, max_deadline_s=12.5)
    assert keys[KEY].label == "ci" and keys[f"{KEY}x"].label == "phone"
    assert keys[f"{KEY}x"].quota.unlimited


@pytest.mark.parametrize(
    ("quota", "message"),
    [
        ("quota: 3", "must be a mapping"),
        ("quota: {concurrent: 2}", "unknown quota 'concurrent'"),
        ("quota: {concurrent_tasks: 0}", "positive whole number"),
        ("quota: {concurrent_tasks: 1.5}", "positive whole number"),
        ("quota: {tokens_per_day: yes}", "positive whole number"),
        ("quota: {max_deadline_s: -1}", "positive number"),
    ],
)
def test_a_bad_quota_says_what_is_wrong(tmp_path: Path, quota: str, message: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(f"keys:\n  - key: {KEY}\n    client: laptop\n    {quota}\n")
    with pytest.raises(ConfigError, match=message):
        load_keys(path)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True),
        ("localhost:8000", True),
        ("LOCALHOST.:8000", True),
        ("127.0.0.1:1", True),
        ("[::1]:8000", True),
        ("[::1]", True),
        ("evil.example", False),
        ("evil.example:8000", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.nip.io", False),
        ("[::1]x", False),
        ("localhost:80a", False),
        ("", False),
        (None, False),
        ("gateway.lan:8000", False),
    ],
)
def test_only_loopback_host_names_are_allowed(host: str | None, allowed: bool) -> None:
    assert host_allowed(host) is allowed


def test_extra_host_names_can_be_allowed() -> None:
    assert host_allowed("gateway.lan:8000", frozenset({"gateway.lan"}))
    assert not host_allowed("other.lan:8000", frozenset({"gateway.lan"}))
