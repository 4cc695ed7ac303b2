"""Fail-back: when a client that failed over to a later broker probes the first one and goes back to it."""

from __future__ import annotations

import random

import pytest

from shared.config import ConnectionSettings
from shared.mqtt import FailBackPolicy


@pytest.mark.parametrize(
    ("url_index", "connected", "closing", "wanted"),
    [
        (1, True, False, True),  # failed over and settled: probe the first broker
        (2, True, False, True),
        (0, True, False, False),  # already on the first broker
        (1, False, False, False),  # reconnecting: failover owns the connection now
        (1, True, True, False),  # closing
    ],
)
def test_probing_is_wanted_only_while_settled_on_a_later_broker(
    url_index: int, connected: bool, closing: bool, wanted: bool
) -> None:
    assert FailBackPolicy(5.0, 3).wanted(url_index, connected, closing) is wanted


def test_no_probing_with_one_broker_or_when_switched_off() -> None:
    assert not FailBackPolicy(5.0, 1).wanted(0, True, False)
    assert not FailBackPolicy(0.0, 2).wanted(1, True, False)


def test_probes_are_spread_around_the_interval_and_their_timeout_is_bounded() -> None:
    policy = FailBackPolicy(4.0, 2)
    delays = [policy.next_probe_s(random.Random(seed)) for seed in range(200)]
    assert 3.0 <= min(delays) < max(delays) <= 5.0
    assert policy.probe_timeout_s() == 2.0
    assert FailBackPolicy(0.5, 2).probe_timeout_s() == 0.25


def test_fail_back_is_on_by_default_and_can_be_switched_off() -> None:
    assert ConnectionSettings().fail_back_probe_s == 5.0
    assert ConnectionSettings(fail_back_probe_s=0).fail_back_probe_s == 0
    with pytest.raises(ValueError):
        ConnectionSettings(fail_back_probe_s=-1)
