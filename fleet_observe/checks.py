"""The doctor's verdicts: small pure functions turning measured facts into a CheckResult each.

A CheckResult that is not `required` prints WARN instead of FAIL and does not change the exit code: it
reports something worth knowing (no node of this id is running yet) rather than a broken setup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.messages import NodeBeacon

CLOCK_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    hint: str = ""
    required: bool = True

    @property
    def label(self) -> str:
        return "PASS" if self.ok else "FAIL" if self.required else "WARN"


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail)


def report_lines(results: Iterable[CheckResult]) -> list[str]:
    """`PASS  name: detail`, with an indented `fix:` line under every FAIL or WARN."""
    lines = []
    for result in results:
        lines.append(f"{result.label}  {result.name}: {result.detail}")
        if not result.ok and result.hint:
            lines.append(f"      fix: {result.hint}")
    return lines


def exit_code(results: Sequence[CheckResult]) -> int:
    return 1 if any(not result.ok and result.required for result in results) else 0


# --- connectivity --------------------------------------------------------------------------------------------


def broker_reachable(url: str, error: str | None) -> CheckResult:
    name = f"broker reachable ({url})"
    if error is None:
        return passed(name, "TCP connection accepted")
    return CheckResult(
        name,
        False,
        f"cannot open a TCP connection: {error}",
        "start the broker (`edge-agent broker`, or `systemctl start mosquitto`), check the host/port in "
        "connection.brokers, and that no firewall blocks the port",
    )


def tls_handshake(url: str, error: str | None, version: str = "") -> CheckResult:
    name = f"TLS handshake ({url})"
    if error is None:
        return passed(name, f"certificate verified{f', {version}' if version else ''}")
    return CheckResult(
        name,
        False,
        error,
        "set connection.tls.ca_file to the CA that signed the broker certificate (provisioning writes ca.crt), "
        "and connect with the host name in the certificate",
    )


def credentials_accepted(url: str, username: str | None, error: str | None) -> CheckResult:
    who = f"user {username!r}" if username else "anonymous"
    name = f"credentials accepted ({who})"
    if error is None:
        return passed(name, f"{url} accepted the MQTT login")
    refused = "refused" in error
    hint = (
        "check connection.username/password (or SYMPHONY_EDGE_USERNAME/PASSWORD) against the broker's password "
        "file; anonymous access is only allowed on loopback"
        if refused
        else "the broker accepted TCP but did not answer the MQTT login: is this port an MQTT listener (TLS vs plain)?"
    )
    return CheckResult(name, False, error, hint)


def acl_round_trip(what: str, topic: str, echoed: bool, rtt_ms: float | None, required: bool = True) -> CheckResult:
    """`what` may publish on and read `topic` when our own probe came back."""
    name = f"ACL: {what}"
    if echoed:
        return passed(name, f"probe on {topic} came back in {rtt_ms:.1f} ms")
    return CheckResult(
        name,
        False,
        f"a probe published on {topic} did not come back",
        f"the broker ACL must grant this user `topic write {topic}` and `topic read {topic}` "
        "(re-render it with `edge-agent provision`)",
        required,
    )


# --- the node on the fabric ---------------------------------------------------------------------------------


def beacon_visible(node_id: str, beacon: NodeBeacon | None, alive: bool, wait_s: float) -> CheckResult:
    name = f"beacon of {node_id}"
    if beacon is None:
        detail = f"no retained beacon: no node {node_id!r} has started on this fabric"
        return CheckResult(name, False, detail, "start it: `edge-agent start -c <node.yaml>`", required=False)
    if beacon.status == "offline":
        detail = f"retained beacon says offline (epoch {beacon.epoch})"
        return CheckResult(name, False, detail, "start the node again, or `edge-agent decommission`", required=False)
    agents = ", ".join(agent.agent_id for agent in beacon.agents) or "no agents"
    if not alive:
        detail = f"retained beacon says online (epoch {beacon.epoch}) but no state came within {wait_s:g} s"
        hint = "the node may have died without its Will reaching the broker; restart it or decommission it"
        return CheckResult(name, False, detail, hint, required=False)
    return passed(name, f"online, epoch {beacon.epoch}, host {beacon.host or '?'}, agents: {agents}")


def duplicate_node_id(
    node_id: str, beacon: NodeBeacon | None, alive: bool, my_host: str, epochs: set[int]
) -> CheckResult:
    """Another live instance uses our node id: a state of another epoch, or a live beacon from another host."""
    name = "node id unique"
    others = sorted(epochs - {beacon.epoch}) if beacon is not None else []
    hint = f"stop the other instance or give this node another node_id (two instances share {node_id!r})"
    if others:
        return CheckResult(
            name, False, f"states of epochs {others} besides the beacon's epoch: two instances run", hint
        )
    if beacon is not None and beacon.status == "online" and alive and beacon.host and beacon.host != my_host:
        detail = (
            f"{node_id!r} is live on host {beacon.host!r} (instance {beacon.instance_id}); this host is {my_host!r}"
        )
        return CheckResult(name, False, detail, hint)
    return passed(name, f"no other live instance of {node_id!r}")


def clock_skew(node_id: str | None, sent_at: float | None, received_at: float, rtt_s: float) -> CheckResult:
    """Compare a live node's state `sent_at` with our receive time; one transit is at most one round trip."""
    name = "clock skew"
    if node_id is None or sent_at is None:
        detail = "no live node sent a state during the check; nothing to compare against"
        return CheckResult(name, False, detail, "start a node, or run doctor with a longer --wait", required=False)
    skew = received_at - sent_at
    allowed = rtt_s + CLOCK_TOLERANCE_S
    direction = "behind" if skew > 0 else "ahead of"
    detail = f"{node_id}'s clock is {abs(skew):.3f} s {direction} this one (round trip {rtt_s * 1000:.1f} ms)"
    if -allowed <= skew <= allowed:
        return passed(name, detail)
    return CheckResult(
        name, False, detail, "synchronise clocks (`timedatectl set-ntp true`, chrony or systemd-timesyncd)"
    )


# --- local model and backend --------------------------------------------------------------------------------


def model_file(agent_id: str, spec: str, path: str | None, error: str | None) -> CheckResult:
    name = f"model of {agent_id}"
    if error is None:
        return passed(name, f"{spec!r} -> {path}")
    return CheckResult(name, False, error, "`edge-agent models pull smollm2`, or set the agent's model to a .gguf file")


def model_load(agent_id: str, path: str, seconds: float | None, error: str | None) -> CheckResult:
    name = f"model loads ({agent_id})"
    if error is None:
        return passed(name, f"llama.cpp loaded {path} in {seconds:.1f} s")
    return CheckResult(name, False, error, "re-download the model; check free memory (`free -h`)")


def backend_choice(choice: str | None, reason: str, error: str | None, required: bool) -> CheckResult:
    name = "backend auto"
    if error is None:
        return passed(name, f"picks {choice}: {reason}")
    return CheckResult(
        name, False, error, 'pip install "symphony-edge[llamacpp]" (or [mlx] on Apple silicon)', required
    )


# --- an operator account ----------------------------------------------------------------------------------------


def operator_reads(what: str, ids: Iterable[str], wait_s: float, required: bool = True) -> CheckResult:
    """An operator must be able to read `what` (beacons, states, router presences) of the fabric."""
    found = sorted(ids)
    name = f"read {what}"
    if found:
        shown = ", ".join(found[:8]) + (f" (+{len(found) - 8})" if len(found) > 8 else "")
        return passed(name, f"{len(found)} seen: {shown}")
    detail = f"nothing received within {wait_s:g} s"
    hint = (
        "check that this account is listed under `operators:` in the fleet file and the broker has the rendered "
        "ACL (re-run `edge-agent provision`), and that nodes are running"
    )
    return CheckResult(name, False, detail, hint, required=required)
