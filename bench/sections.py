"""Generated sections of bench/RESULTS.md: each between its own begin/end markers, replaced in place on a re-run.

The fabric runner writes the head of the file (`bench run --results-md`); the fleet benchmark and the
simulated experiments each own one marked section, which the runner keeps when it rewrites the head.
"""

from __future__ import annotations

import re
from pathlib import Path

_SECTION = re.compile(r"<!-- section (?P<key>[\w-]+): begin -->.*?<!-- section (?P=key): end -->\n?", re.DOTALL)


def markers(key: str) -> tuple[str, str]:
    """The begin and end markers of section `key`."""
    return f"<!-- section {key}: begin -->", f"<!-- section {key}: end -->"


def replace_section(path: Path, key: str, body: str) -> Path:
    """Put `body` between the markers of `key` in `path`: in place when present, else appended."""
    begin, end = markers(key)
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def sections_in(text: str) -> list[str]:
    """Every marked section of `text`, in order (for a writer that rewrites the rest of the file)."""
    return [match.group(0) for match in _SECTION.finditer(text)]
