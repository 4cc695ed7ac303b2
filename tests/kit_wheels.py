"""Wheels of the kit for the kit-upgrade tests: this tree as it is, or with another version number.

Built like provisioning builds the kit's wheel (`pip wheel --no-deps`), from a copy of the packages, so the version
can change without touching the checkout. A machine that cannot build one skips the test that asked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

from edge_agent.cli.main import package_version

PACKAGES = ("shared", "broker", "model_store", "edge_agent", "router", "provisioning", "fleet_observe", "fleet_gateway")


def build_kit_wheel(out: Path, version: str | None = None, broken_start: bool = False) -> Path:
    """A wheel of this tree (the benchmarks left out) into `out`; `version` replaces the project's version;
    `broken_start`: `edge-agent start` of that kit fails at once (a new kit that does not start)."""
    copy = out / f"tree-{version or 'base'}"
    for package in PACKAGES:
        shutil.copytree(REPO / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    if broken_start:
        with (copy / "edge_agent" / "cli" / "start.py").open("a") as start:
            start.write('\nraise SystemExit("this kit is broken on purpose")\n')
    pyproject = (REPO / "pyproject.toml").read_text()
    if version is not None:
        pyproject = re.sub(r'^version = ".*"$', f'version = "{version}"', pyproject, count=1, flags=re.MULTILINE)
    (copy / "pyproject.toml").write_text(pyproject.replace('"bench*",', ""))
    (copy / "README.md").write_text("Symphony Edge (a test build)\n")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(copy)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if built.returncode != 0:
        pytest.skip(f"cannot build a wheel of the kit here: {built.stderr[-500:]}")
    shutil.rmtree(copy, ignore_errors=True)
    return next(out.glob(f"symphony_edge-{version or package_version()}-*.whl"))
