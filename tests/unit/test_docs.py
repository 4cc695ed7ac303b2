"""The docs stay true: the site builds with `--strict`, and every `edge-agent` command they show exists.

A command line in a code block of the README or a docs page is checked against the console script itself
(click's own command tree): its subcommands and its `--options` must exist, so a renamed flag fails here
instead of in a reader's terminal.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from edge_agent.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(?:bash|sh|console)?\n(.*?)```", re.S)


def _command_lines(page: Path) -> list[str]:
    lines: list[str] = []
    for block in FENCE.findall(page.read_text()):
        for raw in block.replace("\\\n", " ").splitlines():
            line = raw.strip().removeprefix("$ ")
            if line.startswith("edge-agent "):
                lines.append(line.split("  #", 1)[0].split(" #", 1)[0].strip())
    return lines


def _check(line: str) -> None:
    words = shlex.split(line)[1:]
    command: click.Command = cli
    context = click.Context(cli)
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        found = command.get_command(context, words[0])
        assert found is not None, f"`{line}`: no command {words[0]!r}"
        command, words = found, words[1:]
    known = {name for parameter in command.params for name in (*parameter.opts, *parameter.secondary_opts)}
    for word in words:
        if word.startswith("--"):
            option = word.split("=", 1)[0]
            assert option in known, f"`{line}`: {option} is not an option of `{command.name}`"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_command_line_in_the_docs_exists(page: Path) -> None:
    for line in _command_lines(page):
        if any(mark in line for mark in ("...", "…", "<", "[", "|")):
            continue  # a synopsis, not a command to paste
        _check(line)


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs is not None, "mkdocs is not installed: `pip install -e .[dev]` installs it"
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
