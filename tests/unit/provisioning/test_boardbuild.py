"""Which board builds llama-cpp-python for which kind of board, and what the build playbook gets (pure planning)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning.artifacts import PORTABLE_LLAMA_CMAKE_ARGS, find_llama_wheel, host_kinds
from provisioning.boardbuild import (
    CUDA_LLAMA_CMAKE_ARGS,
    BoardBuild,
    build_system_requires,
    build_variables,
    llama_cmake_args,
    plan_board_builds,
)
from provisioning.errors import ProvisioningError
from provisioning.fleet import FleetSpec
from provisioning.inventory import parse_ini_inventory
from provisioning.plan import plan_fleet
from provisioning.targets import TargetKind, wheel_fits

JETSON = TargetKind("manylinux2014_aarch64", "3.10", "cuda")
RTX = TargetKind("linux_x86_64", "3.11", "cuda")
PI = TargetKind("manylinux2014_aarch64", "3.11", "cpu")
LAPTOP = TargetKind("linux_x86_64", "3.11", "cpu")
MAC = TargetKind("macosx_14_0_arm64", "3.12", "apple")


def test_each_kind_without_a_wheel_is_built_once_on_its_first_host() -> None:
    hosts = {"pi-1": PI, "jetson-1": JETSON, "pi-2": PI, "jetson-2": JETSON, "laptop": LAPTOP}
    builds = plan_board_builds(hosts, available={LAPTOP.name})  # the control node builds the laptop's kind
    assert builds == [
        BoardBuild("pi-1", PI, "-DGGML_NATIVE=OFF"),
        BoardBuild("jetson-1", JETSON, CUDA_LLAMA_CMAKE_ARGS),
    ]


def test_nothing_is_built_when_every_kind_has_its_wheel() -> None:
    hosts = {"jetson-1": JETSON, "jetson-2": JETSON, "pi-1": PI}
    assert plan_board_builds(hosts, available={JETSON.name, PI.name}) == []


def test_cuda_kinds_are_built_with_cuda_and_cpu_kinds_portably() -> None:
    builds = plan_board_builds({"rtx": RTX, "x86": TargetKind("linux_x86_64", "3.12", "cpu")}, available=())
    assert [(build.host, build.cmake_args) for build in builds] == [
        ("rtx", "-DGGML_CUDA=on"),
        ("x86", PORTABLE_LLAMA_CMAKE_ARGS),
    ]
    assert "-DGGML_NATIVE=OFF" in llama_cmake_args(PI) and "AVX" not in llama_cmake_args(PI)


def test_apple_kinds_are_never_built_on_a_board() -> None:
    assert plan_board_builds({"mac-1": MAC, "mac-2": MAC}, available=()) == []


def test_the_builder_is_the_first_host_of_its_kind_in_inventory_order() -> None:
    inventory = parse_ini_inventory(
        "[brokers]\nhub\n[jetsons]\njetson-b\njetson-a\n"
        "[jetsons:vars]\nsymphony_target_platform=manylinux2014_aarch64\nedge_agent_hardware=cuda\n"
    )
    fleet = FleetSpec.model_validate(
        {
            "broker": {"hosts": ["hub"], "tls": False},
            "agents": {"jetson-a": [{"preset": "math"}], "jetson-b": [{"preset": "math"}]},
        }
    )
    kinds = host_kinds(plan_fleet(fleet, inventory), inventory)
    assert list(kinds) == ["jetson-b", "jetson-a"]  # the fleet file's order does not matter
    (build,) = plan_board_builds(kinds, available=())
    assert build.host == "jetson-b" and build.kind.accelerator == "cuda"


def test_the_build_playbook_variables_name_the_inputs_the_flags_and_where_the_wheel_comes_back(tmp_path: Path) -> None:
    builds = [BoardBuild("jetson-1", JETSON, CUDA_LLAMA_CMAKE_ARGS)]
    inputs = {JETSON.name: tmp_path / "llama-build" / JETSON.name / "inputs"}
    variables = build_variables(builds, inputs, "llama_cpp_python-0.3.36.tar.gz", tmp_path)
    assert variables == {
        "symphony_llama_builders": "jetson-1",
        "symphony_llama_builds": {
            "jetson-1": {
                "kind": JETSON.name,
                "inputs": f"{inputs[JETSON.name]}/",
                "sdist": "llama_cpp_python-0.3.36.tar.gz",
                "cmake_args": "-DGGML_CUDA=on",
                "cuda": True,
                "fetch_to": f"{tmp_path}/llama-build/{JETSON.name}/fetched/",
            }
        },
    }


def test_the_build_backend_is_read_from_the_sdists_pyproject() -> None:
    pyproject = (
        '[build-system]\nrequires = ["scikit-build-core[pyproject]>=0.9.2"]\n'
        'build-backend = "scikit_build_core.build"\n\n[project]\nname = "llama_cpp_python"\n'
        'dependencies = ["numpy>=1.20.0"]\n'
    )
    assert build_system_requires(pyproject) == ["scikit-build-core[pyproject]>=0.9.2"]
    multiline = '[project]\nname = "x"\n[build-system]\nrequires = [\n  "setuptools>=61",\n  \'wheel\',\n]\n'
    assert build_system_requires(multiline) == ["setuptools>=61", "wheel"]
    with pytest.raises(ProvisioningError, match="no \\[build-system\\] requires"):
        build_system_requires('[project]\nname = "x"\n')


def test_a_wheel_fetched_back_for_a_cuda_kind_is_found_in_its_cache_folder_only(tmp_path: Path) -> None:
    wheel = "llama_cpp_python-0.3.36-cp310-cp310-linux_aarch64.whl"
    links = tmp_path / "links"
    links.mkdir()
    (links / wheel).write_bytes(b"a CPU build, perhaps")  # a found wheel says nothing of CUDA: not taken
    assert find_llama_wheel(JETSON, tmp_path / "cache", [links]) is None
    folder = tmp_path / "cache" / "llama" / JETSON.name
    folder.mkdir(parents=True)
    (folder / wheel).write_bytes(b"built on jetson-1")
    found = find_llama_wheel(JETSON, tmp_path / "cache", [links])
    assert found is not None and found.path == folder / wheel


def test_a_wheel_built_on_a_manylinux_kinds_board_fits_that_kind() -> None:
    assert wheel_fits("llama_cpp_python-0.3.36-py3-none-linux_aarch64.whl", JETSON)  # what pip wheel tags it
    assert not wheel_fits("llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl", JETSON)
