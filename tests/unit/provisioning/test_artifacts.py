"""The artifact cache without a network: models fetched once, a prebuilt llama-cpp-python wheel reused, the
variables the role reads (what each host gets, with sha256)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from provisioning.artifacts import artifact_variables, prepare, source_hash
from provisioning.errors import ProvisioningError
from provisioning.fleet import FleetSpec
from provisioning.inventory import parse_ini_inventory
from provisioning.plan import plan_fleet
from provisioning.targets import control_node_platform, control_node_python

GGUF = b"GGUF" + bytes(60)


def fleet(agents: dict[str, list[dict[str, str]]]) -> FleetSpec:
    return FleetSpec.model_validate({"broker": {"hosts": ["b1"], "tls": False}, "agents": agents})


def test_each_model_is_fetched_once_and_every_board_that_needs_it_gets_it(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.gguf").write_bytes(GGUF)
    inventory = parse_ini_inventory("[boards]\nb1\nb2\nb3\n")
    plan = plan_fleet(
        fleet(
            {
                "b1": [{"preset": "math", "backend": "llamacpp", "model": "models/tiny.gguf"}],
                "b2": [{"preset": "writer", "backend": "llamacpp", "model": "models/tiny.gguf"}],
                "b3": [{"preset": "writer", "backend": "echo"}],
            }
        ),
        inventory,
    )
    logged: list[str] = []
    found = prepare(
        plan, inventory, tmp_path / "cache", fleet_dir=tmp_path, ship_kit=False, build_llama=False, log=logged.append
    )
    cached = tmp_path / "cache" / "models" / "tiny.gguf"
    assert cached.read_bytes() == GGUF
    assert found.hosts["b1"].models == found.hosts["b2"].models == {"tiny.gguf": found.hosts["b1"].models["tiny.gguf"]}
    assert found.hosts["b3"].models == {}
    variables = artifact_variables(found)
    assert variables["symphony_kit_wheel"] == ""  # installed from an index (edge_agent_package_spec)
    (model,) = variables["symphony_host_artifacts"]["b2"]["models"]
    assert model == {
        "src": str(cached),
        "name": "tiny.gguf",
        "sha256": hashlib.sha256(GGUF).hexdigest(),
        "directory": False,
    }


def test_a_prebuilt_llama_wheel_of_the_boards_kind_is_copied_into_the_cache(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    python = control_node_python().replace(".", "")
    fits = wheels / f"llama_cpp_python-0.3.36-cp{python}-cp{python}-{control_node_platform()}.whl"
    fits.write_bytes(b"a wheel")
    (wheels / "llama_cpp_python-0.3.36-py3-none-some_other_platform.whl").write_bytes(b"not this one")
    inventory = parse_ini_inventory("[boards]\nb1\n")
    plan = plan_fleet(fleet({"b1": [{"preset": "math", "backend": "echo"}]}), inventory)
    found = prepare(
        plan, inventory, tmp_path / "cache", fleet_dir=tmp_path, find_links=[wheels], ship_kit=False, log=print
    )
    llama = found.hosts["b1"].llama_wheel
    assert llama is not None and llama.path.parent.parent == tmp_path / "cache" / "llama"
    assert llama.path.name == fits.name and llama.sha256 == hashlib.sha256(b"a wheel").hexdigest()


def test_boards_of_a_kind_running_the_openai_backend_get_its_extra(tmp_path: Path) -> None:
    inventory = parse_ini_inventory("[boards]\nb1\nb2\n")
    remote = {"preset": "writer", "backend": "openai", "model": "m", "backend_settings": {"base_url": "http://h/v1"}}
    plan = plan_fleet(fleet({"b1": [{"preset": "math", "backend": "echo"}], "b2": [remote]}), inventory)
    found = prepare(plan, inventory, tmp_path / "cache", fleet_dir=tmp_path, ship_kit=False, build_llama=False)
    hosts = artifact_variables(found)["symphony_host_artifacts"]
    assert hosts["b1"]["extras"] == hosts["b2"]["extras"] == ["openai"]  # one wheelhouse per kind of board
    alone = plan_fleet(fleet({"b1": [{"preset": "math", "backend": "echo"}]}), inventory)
    found = prepare(alone, inventory, tmp_path / "cache", fleet_dir=tmp_path, ship_kit=False, build_llama=False)
    assert artifact_variables(found)["symphony_host_artifacts"]["b1"]["extras"] == []


def test_a_missing_local_model_is_a_clear_error(tmp_path: Path) -> None:
    inventory = parse_ini_inventory("[boards]\nb1\n")
    plan = plan_fleet(fleet({"b1": [{"preset": "math", "backend": "llamacpp", "model": "nowhere.gguf"}]}), inventory)
    with pytest.raises(ProvisioningError, match="does not exist on the control node"):
        prepare(plan, inventory, tmp_path / "cache", fleet_dir=tmp_path, ship_kit=False, build_llama=False)


def test_the_source_hash_follows_the_sources(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "a.py").write_text("x = 1\n")
    before = source_hash(tmp_path)
    (tmp_path / "shared" / "__pycache__").mkdir()
    (tmp_path / "shared" / "__pycache__" / "a.pyc").write_bytes(b"cache")
    assert source_hash(tmp_path) == before
    (tmp_path / "shared" / "a.py").write_text("x = 2\n")
    assert source_hash(tmp_path) != before


def test_digests_are_remembered_against_size_and_mtime_and_a_changed_file_is_hashed_again(tmp_path: Path) -> None:
    from provisioning.artifacts import DIGEST_INDEX, Digests

    model = tmp_path / "m.gguf"
    model.write_bytes(GGUF)
    index = tmp_path / DIGEST_INDEX
    first = Digests(index)
    assert first.sha256(model) == hashlib.sha256(GGUF).hexdigest()
    first.save()
    # A remembered digest is believed while size and mtime hold (that is what saves the hashing) ...
    data = index.read_text().replace(hashlib.sha256(GGUF).hexdigest(), "f" * 64)
    index.write_text(data)
    assert Digests(index).sha256(model) == "f" * 64
    # ... and a file written since is hashed again.
    model.write_bytes(GGUF + b"more")
    assert Digests(index).sha256(model) == hashlib.sha256(GGUF + b"more").hexdigest()
    index.write_text("{not json")
    assert Digests(index).sha256(model) == hashlib.sha256(GGUF + b"more").hexdigest()
