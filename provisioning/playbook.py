"""Run ansible/site.yml on a rendered fleet (the I/O side of provisioning)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from provisioning.errors import ProvisioningError

DEFAULT_PLAYBOOK = Path(__file__).resolve().parent.parent / "ansible" / "site.yml"


def find_ansible_playbook() -> str:
    """The ansible-playbook next to this Python (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    found = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    if found is None:
        raise ProvisioningError(
            "ansible-playbook is not installed: `pip install ansible-core` (or symphony-edge[fleet])"
        )
    return found


def find_ansible() -> str:
    """The ad-hoc `ansible` command next to ansible-playbook."""
    return str(Path(find_ansible_playbook()).with_name("ansible"))


def playbook_command(
    inventory: Path,
    rendered: Path,
    playbook: Path = DEFAULT_PLAYBOOK,
    check: bool = False,
    limit: str | None = None,
    extra_vars: Sequence[str] = (),
    vars_files: Sequence[Path] = (),
) -> list[str]:
    """The ansible-playbook command line for a rendered fleet (pure: nothing runs)."""
    if not playbook.exists():
        raise ProvisioningError(f"playbook {playbook} not found; pass --playbook path/to/ansible/site.yml")
    command = [find_ansible_playbook(), "-i", str(inventory), str(playbook)]
    command += ["-e", f"@{rendered / 'ansible-vars.yml'}"]
    for path in vars_files:
        command += ["-e", f"@{path}"]
    for variable in extra_vars:
        command += ["-e", variable]
    if check:
        command += ["--check", "--diff"]
    if limit:
        command += ["--limit", limit]
    return command


def run_playbook(command: Sequence[str]) -> int:
    """Run ansible-playbook with its output going to the terminal; returns its exit code.

    SSH pipelining is on unless the user's environment says otherwise: a task then costs one SSH round trip
    instead of several file transfers, which is most of a re-provisioning run with nothing to change.
    """
    environment = {"ANSIBLE_PIPELINING": "True", **os.environ}
    return subprocess.run(list(command), check=False, env=environment).returncode
