"""The house's floor plan, checked from the code's own imports.

Each room stands only on the rooms below it; the CLI (`edge_agent.cli`) is the one place that ties rooms
together, and the only product module that may import `bench`. A room that needs something from a room
above it moves that thing down instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FLOOR = {
    "shared": 0,
    "model_store": 1,
    "broker": 1,
    "router": 1,
    "edge_agent": 2,
    "provisioning": 2,
    "fleet_observe": 3,
    "fleet_gateway": 4,
    "bench": 5,
}
"""A room may import rooms on a lower floor, and its own; `edge_agent.cli` may import anything."""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules() -> list[tuple[str, Path]]:
    return [(room, path) for room in FLOOR for path in sorted((ROOT / room).rglob("*.py"))]


@pytest.mark.parametrize(("room", "path"), _modules(), ids=lambda value: str(value))
def test_a_room_imports_only_rooms_below_it(room: str, path: Path) -> None:
    if path.is_relative_to(ROOT / "edge_agent" / "cli"):
        return
    upward = sorted(
        name
        for name in _imports(path)
        if (top := name.split(".")[0]) in FLOOR and top != room and FLOOR[top] >= FLOOR[room]
    )
    assert not upward, f"{path.relative_to(ROOT)} imports {upward}: move what it needs down a floor"


def test_the_router_has_no_import_circle() -> None:
    graph = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts): {
            name for name in _imports(path) if name.startswith("router.")
        }
        for path in (ROOT / "router").rglob("*.py")
    }

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for child in graph.get(start, ()):
            if child == target or (child not in seen and reaches(child, target, seen | {child})):
                return True
        return False

    circles = sorted(module for module in graph if reaches(module, module, set()))
    assert not circles, f"import circles through {circles}"
