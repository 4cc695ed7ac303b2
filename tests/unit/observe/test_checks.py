"""The doctor's verdicts: each check passes, fails with a fix, or warns without failing the run."""

from __future__ import annotations

import pytest

from fleet_observe import checks
from fleet_observe.checks import CheckResult, exit_code, report_lines
from shared.messages import NodeBeacon


def beacon(status: str = "online", epoch: int = 5, host: str = "board") -> NodeBeacon:
    return NodeBeacon(node_id="n1", epoch=epoch, instance_id="i1", status=status, host=host)  # type: ignore[arg-type]


def test_report_lines_show_label_detail_and_a_fix_only_for_problems() -> None:
    results = [
        CheckResult("a", True, "fine", "never shown"),
        CheckResult("b", False, "broken", "do this"),
        CheckResult("c", False, "odd", "maybe that", required=False),
    ]
    assert report_lines(results) == [
        "PASS  a: fine",
        "FAIL  b: broken",
        "      fix: do this",
        "WARN  c: odd",
        "      fix: maybe that",
    ]


@pytest.mark.parametrize(
    ("results", "code"),
    [
        ([CheckResult("a", True, "")], 0),
        ([CheckResult("a", True, ""), CheckResult("w", False, "", required=False)], 0),
        ([CheckResult("a", True, ""), CheckResult("f", False, "")], 1),
    ],
)
def test_exit_code_is_one_only_when_a_required_check_fails(results: list[CheckResult], code: int) -> None:
    assert exit_code(results) == code


def test_a_refused_login_points_at_the_credentials() -> None:
    result = checks.credentials_accepted(
        "mqtt://h:1883", "node-1", "broker mqtt://h:1883 refused the connection: Not authorized"
    )
    assert (result.label, result.name) == ("FAIL", "credentials accepted (user 'node-1')")
    assert "password" in result.hint


def test_a_silent_broker_points_at_the_listener_not_the_password() -> None:
    result = checks.credentials_accepted("mqtt://h:8883", None, "no broker answered within 3 s (tried mqtt://h:8883)")
    assert not result.ok and "TLS vs plain" in result.hint


def test_unreachable_broker_and_tls_failures_fail_with_a_hint() -> None:
    assert checks.broker_reachable("mqtt://h:1", "Connection refused").hint
    assert checks.broker_reachable("mqtt://h:1", None).ok
    tls = checks.tls_handshake("mqtts://h:8883", "certificate verify failed")
    assert not tls.ok and "ca_file" in tls.hint
    assert checks.tls_handshake("mqtts://h:8883", None, "TLSv1.3").detail == "certificate verified, TLSv1.3"


def test_acl_probe_that_does_not_come_back_fails_or_warns() -> None:
    assert checks.acl_round_trip("x", "t", True, 1.5).detail == "probe on t came back in 1.5 ms"
    assert checks.acl_round_trip("x", "t", False, None).label == "FAIL"
    assert checks.acl_round_trip("x", "t", False, None, required=False).label == "WARN"


@pytest.mark.parametrize(
    ("seen", "alive", "label", "words"),
    [
        (None, False, "WARN", "no retained beacon"),
        (beacon("offline"), False, "WARN", "offline"),
        (beacon(), False, "WARN", "no state came within 2 s"),
        (beacon(), True, "PASS", "online, epoch 5, host board"),
    ],
)
def test_beacon_visible(seen: NodeBeacon | None, alive: bool, label: str, words: str) -> None:
    result = checks.beacon_visible("n1", seen, alive, wait_s=2.0)
    assert result.label == label and words in result.detail


@pytest.mark.parametrize(
    ("seen", "alive", "epochs", "ok"),
    [
        (None, False, set(), True),
        (beacon(host="other"), False, set(), True),  # a ghost beacon from another host: a start takes over
        (beacon(host="here"), True, {5}, True),  # the live node is this host's own
        (beacon(host="other"), True, {5}, False),  # live on another host
        (beacon(host="here"), True, {5, 9}, False),  # two epochs publish state: two instances
    ],
)
def test_duplicate_node_id(seen: NodeBeacon | None, alive: bool, epochs: set[int], ok: bool) -> None:
    assert checks.duplicate_node_id("n1", seen, alive, "here", epochs).ok is ok


@pytest.mark.parametrize(
    ("sent_at", "received_at", "rtt_s", "ok"),
    [
        (100.0, 100.2, 0.01, True),
        (100.0, 99.5, 0.01, True),
        (100.0, 101.5, 0.01, False),  # node 1.5 s behind
        (100.0, 98.0, 0.01, False),  # node 2 s ahead
        (100.0, 102.5, 2.0, True),  # a slow round trip explains the gap
    ],
)
def test_clock_skew_tolerates_the_round_trip(sent_at: float, received_at: float, rtt_s: float, ok: bool) -> None:
    assert checks.clock_skew("n1", sent_at, received_at, rtt_s).ok is ok


def test_clock_skew_without_a_live_node_only_warns() -> None:
    assert checks.clock_skew(None, None, 0.0, 0.0).label == "WARN"


def test_model_and_backend_checks() -> None:
    assert checks.model_file("a", "default", "/m.gguf", None).detail == "'default' -> /m.gguf"
    assert "models pull" in checks.model_file("a", "x", None, "no model matches 'x'").hint
    assert checks.model_load("a", "/m.gguf", 0.5, None).ok
    assert not checks.model_load("a", "/m.gguf", None, "ValueError: bad").ok
    assert checks.backend_choice("llamacpp", "CPU", None, True).detail == "picks llamacpp: CPU"
    assert checks.backend_choice(None, "", "no engine", required=False).label == "WARN"


def test_an_operator_that_reads_nothing_fails_with_a_hint_about_the_acl() -> None:
    seen = checks.operator_reads("node beacons", {"node-b", "node-a"}, 5.0)
    assert seen.ok and seen.detail == "2 seen: node-a, node-b"
    nothing = checks.operator_reads("node beacons", set(), 5.0)
    assert nothing.label == "FAIL" and "operators:" in nothing.hint
    assert checks.operator_reads("router presences", set(), 5.0, required=False).label == "WARN"
