"""llama-cpp-python built once on the first board of a kind and fetched back into the artifact cache.

A kind of board whose wheel is nowhere at hand (cache/llama/<kind>/, find-links, pip's cache) and that the
control node cannot build (another platform or Python, or a CUDA build) gets its wheel built on ONE board: the
first of that kind in inventory order. `edge-agent provision` ships that board what the build needs (boards are
offline): the llama-cpp-python sdist and its build backend's wheels for the board's platform and Python
(scikit-build-core and its dependencies, cmake, ninja), runs `pip wheel --no-index` there through
ansible/build-llama.yml, and fetches the wheel back into cache/llama/<kind>/ (sha256 checked). The main playbook
then ships it to every board of the kind, the builder included, like a wheel built on the control node. The next
provision finds it in the cache and builds nothing.

If the build fails, provisioning stops and says which board and kind (the playbook's output above shows why);
`--no-build-llama` skips every build instead, and the boards then build from source themselves (today's path).

The planning (which host builds which kind, with which CMAKE_ARGS, with which variables) is pure; the download
of the build inputs and the playbook run are the I/O below it.
"""

from __future__ import annotations

import re
import sys
import tarfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from provisioning.artifacts import (
    LLAMA_CPP_SPEC,
    PORTABLE_LLAMA_CMAKE_ARGS,
    Log,
    control_node_builds_llama,
    copy_into,
    ensure_folder,
    find_llama_wheel,
    folder_of,
    host_kinds,
    run_step,
    sha256_of,
)
from provisioning.errors import ProvisioningError
from provisioning.inventory import Inventory
from provisioning.plan import FleetPlan
from provisioning.playbook import playbook_command, run_playbook
from provisioning.targets import TargetKind, wheel_fits

BUILD_PLAYBOOK = Path(__file__).resolve().parent.parent / "ansible" / "build-llama.yml"
CUDA_LLAMA_CMAKE_ARGS = "-DGGML_CUDA=on"
# The build tools scikit-build-core asks for when the board's own are missing or too old.
BUILD_TOOLS = ("cmake", "ninja")


@dataclass(frozen=True)
class BoardBuild:
    """`host` builds the llama-cpp-python wheel of `kind` with `cmake_args`."""

    host: str
    kind: TargetKind
    cmake_args: str


def llama_cmake_args(kind: TargetKind) -> str:
    """CMAKE_ARGS for a kind: CUDA kinds the GPU build, CPU kinds a portable build (no -march=native)."""
    if kind.accelerator == "cuda":
        return CUDA_LLAMA_CMAKE_ARGS
    if kind.platform.endswith(("x86_64", "amd64")):
        return PORTABLE_LLAMA_CMAKE_ARGS
    return "-DGGML_NATIVE=OFF"  # the AVX flags mean nothing off x86


def plan_board_builds(hosts: dict[str, TargetKind], available: Collection[str]) -> list[BoardBuild]:
    """Which host builds which kind (pure).

    `hosts` maps each host to its kind, in inventory order; `available` names the kinds whose wheel is already at
    hand or that the control node builds. Each other kind is built once, on its first host; Apple kinds never
    (they run MLX, not llama.cpp).
    """
    builds: dict[str, BoardBuild] = {}
    for host, kind in hosts.items():
        if kind.is_apple or kind.name in available or kind.name in builds:
            continue
        builds[kind.name] = BoardBuild(host, kind, llama_cmake_args(kind))
    return list(builds.values())


def build_variables(builds: Sequence[BoardBuild], inputs: dict[str, Path], sdist: str, cache: Path) -> dict[str, Any]:
    """Extra variables of ansible/build-llama.yml (pure): per builder host, what to copy, how to build, where to
    fetch the wheel back to."""
    return {
        "symphony_llama_builders": ",".join(build.host for build in builds),  # the play's hosts pattern
        "symphony_llama_builds": {
            build.host: {
                "kind": build.kind.name,
                "inputs": f"{inputs[build.kind.name]}/",
                "sdist": sdist,
                "cmake_args": build.cmake_args,
                "cuda": build.kind.accelerator == "cuda",
                "fetch_to": f"{cache / 'llama-build' / build.kind.name / 'fetched'}/",
            }
            for build in builds
        },
    }


def build_system_requires(pyproject: str) -> list[str]:
    """The `requires` of a pyproject.toml's [build-system] table (pure; a regex, so Python 3.10 needs no tomli)."""
    table = re.search(r"^\[build-system\]\s*$(.*?)(?=^\[|\Z)", pyproject, re.MULTILINE | re.DOTALL)
    requires = re.search(r"^requires\s*=\s*\[(.*?)\]\s*$", table.group(1), re.MULTILINE | re.DOTALL) if table else None
    if requires is None:
        raise ProvisioningError("the sdist's pyproject.toml names no [build-system] requires")
    return re.findall(r"[\"']([^\"']+)[\"']", requires.group(1))


def build_requirements(sdist: Path) -> list[str]:
    """The [build-system] requires of an sdist's pyproject.toml, plus the build tools (cmake, ninja)."""
    with tarfile.open(sdist) as archive:
        member = next(
            (item for item in archive.getmembers() if re.fullmatch(r"[^/]+/pyproject\.toml", item.name)), None
        )
        handle = archive.extractfile(member) if member else None
        if handle is None:
            raise ProvisioningError(f"{sdist} has no pyproject.toml")
        text = handle.read().decode()
    return [*build_system_requires(text), *BUILD_TOOLS]


def llama_sdist(cache: Path, log: Log = print) -> Path:
    """The llama-cpp-python sdist of LLAMA_CPP_SPEC, downloaded once into cache/llama-build/sdist/."""
    folder = ensure_folder(cache / "llama-build" / "sdist")
    version = LLAMA_CPP_SPEC.split("==")[1]
    found = sorted(folder.glob(f"llama_cpp_python-{version}.tar.gz"))
    if found:
        return found[0]
    log(f"downloading the {LLAMA_CPP_SPEC} sdist (pip download --no-binary :all:)")
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
    run_step([*download, "--dest", str(folder), LLAMA_CPP_SPEC], "download the llama-cpp-python sdist")
    return next(folder.glob(f"llama_cpp_python-{version}.tar.gz"))


def build_inputs(kind: TargetKind, sdist: Path, cache: Path, log: Log = print) -> Path:
    """cache/llama-build/<kind>/inputs: the sdist and its build backend's wheels for the kind, with SHA256SUMS."""
    folder = ensure_folder(cache / "llama-build" / kind.name / "inputs")
    if not (folder / "SHA256SUMS").is_file():
        log(f"downloading the build backend of llama-cpp-python for {kind.name} (pip download --only-binary=:all:)")
        platforms = [word for platform in kind.pip_platforms() for word in ("--platform", platform)]
        download = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(folder), "--only-binary=:all:"]
        run_step(
            [
                *download,
                "--python-version",
                kind.python,
                "--implementation",
                "cp",
                *platforms,
                *build_requirements(sdist),
            ],
            f"download the build backend of llama-cpp-python for {kind.name}",
        )
        copy_into(sdist, folder)
        files = sorted(path for path in folder.iterdir() if path.name != "SHA256SUMS")
        (folder / "SHA256SUMS").write_text("".join(f"{sha256_of(path)}  {path.name}\n" for path in files))
    return folder


def build_on_boards(
    plan: FleetPlan,
    inventory: Inventory,
    inventory_path: Path,
    rendered: Path,
    cache: Path,
    *,
    find_links: Sequence[Path] = (),
    build_here: bool = True,
    on_boards_only: bool = False,
    extra_vars: Sequence[str] = (),
    log: Log = print,
) -> list[BoardBuild]:
    """Build each missing kind's wheel on its first board and fetch it into cache/llama/<kind>/; returns the builds.

    `build_here`: the control node builds the kinds it can (prepare does that after this); `on_boards_only`
    counts no kind as buildable here (every missing wheel is built on a board: the test's "foreign" kind).
    """
    kinds = host_kinds(plan, inventory)
    available = {
        kind.name
        for kind in set(kinds.values())
        if find_llama_wheel(kind, cache, find_links, log)
        or (build_here and not on_boards_only and control_node_builds_llama(kind))
    }
    builds = plan_board_builds(kinds, available)
    if not builds:
        return []
    sdist = llama_sdist(cache, log)
    inputs = {build.kind.name: build_inputs(build.kind, sdist, cache, log) for build in builds}
    variables = rendered / "llama-build-vars.yml"
    variables.write_text(yaml.safe_dump(build_variables(builds, inputs, sdist.name, cache), sort_keys=False))
    for build in builds:
        log(f"building llama-cpp-python for {build.kind.name} on {build.host} (CMAKE_ARGS={build.cmake_args}; minutes)")
    limit = ",".join(build.host for build in builds)
    command = playbook_command(
        inventory_path, rendered, BUILD_PLAYBOOK, limit=limit, extra_vars=extra_vars, vars_files=[variables]
    )
    started = time.monotonic()
    code = run_playbook(command)
    if code != 0:
        raise ProvisioningError(
            f"building llama-cpp-python on {limit} failed (ansible/build-llama.yml exited with {code}; its output "
            "above says why: a missing compiler, cmake or Python headers, or CUDA not under /usr/local/cuda). "
            "Fix the board and provision again, or pass --no-build-llama to let every board build from source"
        )
    for build in builds:
        fetched = sorted((cache / "llama-build" / build.kind.name / "fetched").glob("llama_cpp_python-*.whl"))
        fits = [path for path in fetched if wheel_fits(path.name, build.kind)]
        if not fits:
            raise ProvisioningError(
                f"{build.host} built no llama-cpp-python wheel that fits {build.kind.name} (fetched: "
                f"{[path.name for path in fetched]}); check symphony_target_platform/python for that host"
            )
        wheel = copy_into(fits[-1], folder_of(build.kind, cache))
        log(
            f"llama-cpp-python for {build.kind.name} built on {build.host} and fetched back in "
            f"{time.monotonic() - started:.0f} s: {wheel} ({wheel.stat().st_size / 1e6:.1f} MB)"
        )
    return builds
