"""The router's id and state file: stable across restarts, overridable by flags, a broken id file is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.identity import RouterIdentityError, resolve_identity


def test_first_start_creates_the_id_and_later_starts_reuse_it(tmp_path: Path) -> None:
    first = resolve_identity(tmp_path / "state", new_id=lambda: "router-box-1a2b")
    expected = ("router-box-1a2b", tmp_path / "state" / "router-box-1a2b.linucb.json", True)
    assert (first.router_id, first.state_file, first.created) == expected
    again = resolve_identity(tmp_path / "state", new_id=lambda: "router-box-ffff")
    assert (again.router_id, again.state_file, again.created) == (first.router_id, first.state_file, False)
    assert (tmp_path / "state" / "router-id").read_text().strip() == "router-box-1a2b"


def test_flags_override_the_stored_id_and_state_file(tmp_path: Path) -> None:
    resolve_identity(tmp_path, new_id=lambda: "stored")
    named = resolve_identity(tmp_path, router_id="router-a")
    assert (named.router_id, named.state_file) == ("router-a", tmp_path / "router-a.linucb.json")
    custom = resolve_identity(tmp_path, state_file=tmp_path / "elsewhere.json")
    assert (custom.router_id, custom.state_file) == ("stored", tmp_path / "elsewhere.json")
    assert (tmp_path / "router-id").read_text().strip() == "stored"  # a flag never rewrites the stored id


def test_the_default_id_is_random_once_then_fixed(tmp_path: Path) -> None:
    first = resolve_identity(tmp_path)
    assert first.router_id.startswith("router-") and first.created
    assert resolve_identity(tmp_path).router_id == first.router_id


@pytest.mark.parametrize("content", ["", "bad/id\n", "+"])
def test_a_broken_id_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "router-id").write_text(content)
    with pytest.raises(RouterIdentityError, match="router-id does not hold a valid router id"):
        resolve_identity(tmp_path)
