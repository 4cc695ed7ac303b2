"""What each board needs shipped: its kind of target (platform, Python, accelerator) and its model files (pure).

Boards of one kind share one wheelhouse and one llama-cpp-python wheel, built or fetched once on the control node
(`provisioning.artifacts`). A kind comes from inventory variables, host first, then its groups:

    symphony_target_platform   pip platform tag of the board (default: the control node's, e.g. linux_x86_64;
                               manylinux2014_aarch64 for a Jetson, macosx_14_0_arm64 for an Apple-silicon Mac)
    symphony_target_python     the board's Python as major.minor (default: the control node's)
    edge_agent_hardware        cpu, cuda, apple or auto (the role detects auto; macosx_*_arm64 means apple)

Agents with the backends below read a model file; the control node fetches each model spec once and the role
copies it to `<state_dir>/models/<file>`, the path node.yaml names. A spec is "default"/"smollm2" (the bundled
SmolLM2 GGUF), an http(s) URL of a GGUF file, or a path on the control node (a .gguf file or an MLX directory).
A URL may pin the file's sha256 as `#sha256=<64 hex>`; a plain http:// URL must (model_store.split_pinned_url).
"""

from __future__ import annotations

import re
import sysconfig
import urllib.parse
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from provisioning.errors import ProvisioningError
from provisioning.inventory import Inventory
from shared.config import AgentConfig

MODEL_BACKENDS = frozenset({"auto", "llamacpp", "mlx"})
DEFAULT_MODEL_SPECS = frozenset({"default", "smollm2"})
BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"  # model_store.BUNDLED_MODEL_FILE, without its imports
ACCELERATORS = frozenset({"auto", "cpu", "cuda", "apple"})


@dataclass(frozen=True)
class TargetKind:
    """Boards that can share one wheelhouse and one llama-cpp-python wheel."""

    platform: str
    python: str
    accelerator: str

    @property
    def name(self) -> str:
        return f"{self.platform}-py{self.python}-{self.accelerator}"

    @property
    def wheelhouse_key(self) -> str:
        """The wheelhouse depends on the platform and the Python only."""
        return f"{self.platform}-py{self.python}"

    @property
    def is_apple(self) -> bool:
        return self.accelerator == "apple"

    def pip_platforms(self) -> list[str]:
        """`pip download --platform` values: a linux_<arch> board also takes the manylinux wheels."""
        if self.platform.startswith("linux_"):
            arch = self.platform.removeprefix("linux_")
            return [f"manylinux_2_28_{arch}", f"manylinux_2_17_{arch}", f"manylinux2014_{arch}", self.platform]
        return [self.platform]


def control_node_platform() -> str:
    """This machine's platform as a pip tag (linux-x86_64 -> linux_x86_64, macosx-14.0-arm64 -> macosx_14_0_arm64)."""
    return sysconfig.get_platform().replace("-", "_").replace(".", "_")


def control_node_python() -> str:
    return sysconfig.get_python_version()


def host_variables(inventory: Inventory, host: str) -> dict[str, Any]:
    """The host's variables over those of the groups it belongs to (group order: inventory order)."""
    merged: dict[str, Any] = {}
    for group, variables in inventory.group_vars.items():
        if host in inventory.members(group):
            merged.update(variables)
    merged.update(inventory.hosts.get(host, {}))
    return merged


def target_kind(inventory: Inventory, host: str, platform: str = "", python: str = "") -> TargetKind:
    """The kind of `host`; `platform`/`python` default to the control node's."""
    variables = host_variables(inventory, host)
    platform = str(variables.get("symphony_target_platform") or platform or control_node_platform())
    python = str(variables.get("symphony_target_python") or python or control_node_python())
    accelerator = str(variables.get("edge_agent_hardware") or "auto")
    if accelerator not in ACCELERATORS:
        raise ProvisioningError(
            f"host {host}: edge_agent_hardware {accelerator!r} is not one of {sorted(ACCELERATORS)}"
        )
    if accelerator == "auto" and platform.startswith("macosx_") and platform.endswith("arm64"):
        accelerator = "apple"
    if accelerator == "auto":
        # The role still detects NVIDIA devices: the shipped CPU wheel is installed only where it finds none.
        accelerator = "cpu"
    return TargetKind(platform, python, accelerator)


def needs_model_file(agent: AgentConfig) -> bool:
    return agent.backend in MODEL_BACKENDS


def shipped_model_name(spec: str) -> str:
    """The file (or directory) name a model spec gets in the boards' models directory."""
    if spec.strip().lower() in DEFAULT_MODEL_SPECS:
        return BUNDLED_MODEL_FILE
    parsed = urllib.parse.urlparse(spec)
    if parsed.scheme in ("http", "https"):
        model_url_pin(spec)  # an unpinned http:// URL stops here, before anything is downloaded
        name = PurePosixPath(parsed.path).name
        if not name.endswith(".gguf"):
            raise ProvisioningError(f"model URL {spec!r} must name a .gguf file")
        return name
    name = PurePosixPath(spec.rstrip("/")).name
    if not name:
        raise ProvisioningError(f"model {spec!r} names no file")
    return name


def model_url_pin(url: str) -> str | None:
    """The sha256 a model URL pins (None: none); ProvisioningError for plain http:// without one."""
    from model_store import ModelError, split_pinned_url  # stdlib-only module: cheap even when planning only

    try:
        return split_pinned_url(url)[1]
    except ModelError as error:
        raise ProvisioningError(str(error)) from None


def shipped_model_path(models_dir: str, spec: str) -> str:
    return f"{models_dir}/{shipped_model_name(spec)}"


def check_apple_models(host: str, kind: TargetKind, agents: tuple[AgentConfig, ...]) -> None:
    """An Apple board runs MLX: the bundled GGUF and GGUF URLs cannot serve its agents; stop before Ansible runs."""
    if not kind.is_apple:
        return
    for agent in agents:
        if agent.backend not in ("auto", "mlx"):
            continue
        if agent.model.strip().lower() in DEFAULT_MODEL_SPECS or agent.model.endswith(".gguf"):
            raise ProvisioningError(
                f"host {host} is an Apple board (backend mlx) but agent {agent.agent_id} has model "
                f"{agent.model!r}, a GGUF file MLX cannot run; download an MLX model to the control node "
                "(a directory with config.json and *.safetensors, e.g. `huggingface-cli download "
                "mlx-community/SmolLM2-135M-Instruct --local-dir models/smollm2-mlx`) and set "
                "`model: models/smollm2-mlx` for that agent in the fleet file"
            )


def wheel_fits(filename: str, kind: TargetKind) -> bool:
    """Whether a wheel file (name-version[-build]-python-abi-platform.whl) installs on boards of `kind`."""
    parts = filename.removesuffix(".whl").split("-")
    if len(parts) < 5:
        return False
    python_tags, platform_tags = parts[-3].split("."), parts[-1].split(".")
    major, minor = kind.python.split(".")[:2]
    if not {"py3", f"py{major}{minor}", f"cp{major}{minor}"} & set(python_tags):
        return False
    accepted = {"any", *kind.pip_platforms()}
    # A Linux board takes its architecture's manylinux wheels and plain linux_<arch> ones (a wheel built on a board
    # of the kind is tagged so), whether the kind names linux_<arch> or a manylinux platform.
    linux = re.fullmatch(r"(?:linux|manylinux\d+|manylinux_\d+_\d+)_(.+)", kind.platform)
    arch = linux.group(1) if linux else None
    return any(
        tag in accepted
        or (arch is not None and (tag == f"linux_{arch}" or (tag.startswith("manylinux") and tag.endswith(f"_{arch}"))))
        for tag in platform_tags
    )
