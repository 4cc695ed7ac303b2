"""The edge_agent role refuses a venv Python the service user cannot run (a pyenv Python under root's 0700 home),
saying which path is closed, instead of provisioning boards whose agents never start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

SCRIPT = REPO / "ansible/roles/edge_agent/files/check_python.py"
SYSTEM_PYTHON = Path("/usr/bin/python3")


def check(python: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), str(SCRIPT), *extra], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no /usr/bin/python3")
def test_a_system_python_passes() -> None:
    result = check(SYSTEM_PYTHON)
    assert result.returncode == 0 and result.stdout.startswith("ok:"), result.stdout + result.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="Linux permissions")
def test_a_python_inside_a_private_home_is_refused_with_the_path_that_is_closed(tmp_path: Path) -> None:
    home = tmp_path / "root-home"  # like /root (0700) holding ~/.pyenv
    versions = home / ".pyenv/versions/3.11/bin"
    versions.mkdir(parents=True)
    base = Path(os.path.realpath(sys.executable))
    python = versions / "python3"
    shutil.copy2(base, python)  # a copy runs with the same libraries (sys.prefix falls back to the build prefix)
    home.chmod(0o700)
    result = check(python)
    assert result.returncode == 1, result.stdout + result.stderr
    assert str(home) in result.stdout and "0o700" in result.stdout and "cannot enter" in result.stdout


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no /usr/bin/python3")
def test_an_existing_venv_built_with_a_private_python_is_refused_too(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir()
    (private / "python3").symlink_to(os.path.realpath(sys.executable))
    venv_python = tmp_path / "venv-python"
    venv_python.symlink_to(private / "python3")
    private.chmod(0o700)
    own = os.path.realpath(sys.executable)
    result = check(SYSTEM_PYTHON, str(venv_python))
    closed = [part for part in Path(own).parents if part != Path("/") and not part.stat().st_mode & 0o001]
    assert result.returncode == (1 if closed else 0), result.stdout
