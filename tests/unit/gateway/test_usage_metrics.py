"""Per-key usage as Prometheus metrics: what each key used and why requests were refused, on loopback."""

from __future__ import annotations

import urllib.request

import pytest

from fleet_gateway.quotas import QuotaBook, QuotaExceeded
from fleet_gateway.usage_metrics import serve_usage_metrics, usage_families
from shared.http_auth import ClientAccount, KeyQuota

pytest.importorskip("prometheus_client")

LAPTOP = ClientAccount("laptop", quota=KeyQuota(concurrent_tasks=1), name="laptop-ci")
PHONE = ClientAccount("phone")


def used_book() -> QuotaBook:
    book = QuotaBook(lambda: 1_000.0)
    book.admit(LAPTOP)
    with pytest.raises(QuotaExceeded):
        book.admit(LAPTOP)
    book.record_tokens(LAPTOP, 12, 30)
    book.admit(PHONE)
    book.release(PHONE)
    return book


def test_each_key_has_its_requests_refusals_tokens_and_tasks_in_flight() -> None:
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in usage_families(used_book())
        for sample in family.samples
    }
    laptop = (("client", "laptop"), ("key", "laptop-ci"))
    assert found[("symphony_gateway_requests_total", laptop)] == 1
    assert found[("symphony_gateway_refused_total", (*laptop, ("reason", "concurrent_tasks")))] == 1
    assert found[("symphony_gateway_tokens_total", (laptop[0], laptop[1], ("kind", "completion")))] == 30
    assert found[("symphony_gateway_in_flight", laptop)] == 1
    assert found[("symphony_gateway_tokens_last_24h", laptop)] == 42
    assert found[("symphony_gateway_in_flight", (("client", "phone"), ("key", "phone")))] == 0


def test_the_endpoint_serves_them_on_loopback() -> None:
    metrics = serve_usage_metrics(0, used_book())
    try:
        assert metrics.host == "127.0.0.1"
        with urllib.request.urlopen(metrics.url, timeout=10) as response:
            text = response.read().decode()
    finally:
        metrics.close()
    assert 'symphony_gateway_requests_total{client="laptop",key="laptop-ci"} 1.0' in text
