"""`edge-agent provision --check` (ansible-playbook --check --diff) prints no secret (issue 19, item 10).

Before: the dry run printed node.yaml (the node's MQTT password), mosquitto.conf (a site's bridge password), the
password files and the TLS private keys as diffs. The attacker here is whoever reads the operator's terminal,
CI log or shell history: the test greps the whole output for every generated secret, old and new.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from integration.provisioning.test_playbook import ANSIBLE, needs, recap, run_playbook

from provisioning.render import render

pytestmark = pytest.mark.slow


def secrets_of(rendered: Path) -> set[str]:
    """Every secret a render generated: passwords, API keys, password hashes, private key material."""
    saved = yaml.safe_load((rendered / "secrets.yaml").read_text())
    found = {str(value) for section in ("passwords", "api_keys") for value in (saved.get(section) or {}).values()}
    for name in ("broker/passwd", "broker/amqtt-passwd"):
        found |= {line.split(":", 1)[1] for line in (rendered / name).read_text().splitlines() if ":" in line}
    for key in rendered.rglob("*.key"):
        body = [line for line in key.read_text().splitlines() if line and not line.startswith("-----")]
        found |= {line for line in body if len(line) >= 40}
    return {secret for secret in found if len(secret) >= 16}


@pytest.mark.parametrize("kind", ["mosquitto", "embedded"])
def test_a_dry_run_with_diffs_prints_no_password_hash_or_key(tmp_path: Path, kind: str) -> None:
    needs("ansible")
    prefix = tmp_path / "root"
    fleet = yaml.safe_load((ANSIBLE / "fleet.localhost.yml").read_text())
    fleet["prefix"] = str(prefix)
    fleet["broker"]["kind"] = kind
    fleet["broker"]["tls"] = True  # certificates and private keys for the broker and the node
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump(fleet))
    inventory = ANSIBLE / "inventory.localhost.ini"
    render(inventory, tmp_path / "fleet.yml", tmp_path / "installed")
    run_playbook(inventory, tmp_path / "installed")
    # A fresh render: every password, hash and key differs from the installed one, so the dry run has a diff
    # for each secret-bearing file, with the old secret on one side and the new one on the other.
    render(inventory, tmp_path / "fleet.yml", tmp_path / "fresh")

    output = run_playbook(inventory, tmp_path / "fresh", "--check", "--diff")

    assert recap(output)["changed"] > 0  # the dry run saw the new files
    secrets = secrets_of(tmp_path / "installed") | secrets_of(tmp_path / "fresh")
    assert len(secrets) >= 6
    leaked = sorted(secret[:6] + "..." for secret in secrets if secret in output)
    assert leaked == [], f"{len(leaked)} secret(s) in the --check --diff output"
    assert not re.search(r"password:\s*\S{16,}", output)
