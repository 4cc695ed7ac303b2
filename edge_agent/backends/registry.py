"""Find backends by name and pick one automatically for the machine we run on.

Backends are registered as ``"module:factory"`` strings (built-ins here, plugins through the
``symphony_edge.backends`` entry-point group) and imported only when created, so
``import edge_agent.backends`` never loads llama.cpp or MLX. ``choose_backend`` is a pure function of
``PlatformFacts``; ``detect_platform`` is the one place that looks at the real machine.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from edge_agent.backends.base import Backend, BackendUnavailable

BackendFactory = Callable[..., Backend]

_FACTORIES: dict[str, str | BackendFactory] = {
    "echo": "edge_agent.backends.echo:EchoBackend",
    "llamacpp": "edge_agent.backends.llamacpp:LlamaCppBackend",
    "mlx": "edge_agent.backends.mlx:MLXBackend",
    "openai": "edge_agent.backends.openai:OpenAIBackend",
}

DEFAULT_COST_PER_1K_TOKENS: dict[str, float] = {
    "echo": 0.0,  # a test double
    "scripted": 0.1,  # stands for a small local model; a fleet profile sets its own
    "llamacpp": 0.02,  # a local model: the electricity and wear of an edge board
    "mlx": 0.02,
    "openai": 0.5,  # a hosted model
}
"""What an agent announces per 1k tokens when its config sets no `cost_per_1k_tokens` (cost units, not money)."""

AUTO = "auto"
ENTRY_POINT_GROUP = "symphony_edge.backends"
"""Third-party packages add backends with an entry point in this group, ``name = "module:factory"``."""

INSTALL_HINT = (
    'install a model engine: `pip install "symphony-edge[llamacpp]"` (any machine) or '
    '`pip install "symphony-edge[mlx]"` (Apple silicon)'
)


@dataclass(frozen=True)
class PlatformFacts:
    """What ``choose_backend`` needs to know about a machine; gathered by ``detect_platform``."""

    system: str
    machine: str
    mlx_importable: bool
    llama_cpp_importable: bool
    llama_gpu_offload: bool
    cpu_count: int = 1


@dataclass(frozen=True)
class BackendChoice:
    """The backend picked for a machine, its llama.cpp offload and thread settings, and why."""

    name: str
    gpu_layers: int
    reason: str
    threads: int | None = None

    def settings(self) -> dict[str, Any]:
        """Return the keyword settings this choice implies for ``create_backend``."""
        if self.name != "llamacpp":
            return {}
        settings: dict[str, Any] = {"n_gpu_layers": self.gpu_layers}
        if self.threads is not None:
            settings["n_threads"] = self.threads
        return settings


def register(name: str, factory: str | BackendFactory) -> None:
    """Register a backend factory under ``name``: a callable, or a lazy ``"module:attribute"`` string."""
    if name == AUTO:
        raise ValueError(f"{AUTO!r} is reserved for automatic selection")
    _FACTORIES[name] = factory


def unregister(name: str) -> None:
    """Remove the backend registered as ``name``; unknown names are ignored."""
    _FACTORIES.pop(name, None)


def default_cost_per_1k_tokens(backend: str) -> float:
    """The price an agent on `backend` announces by default (a plugin backend: the local-model price)."""
    return DEFAULT_COST_PER_1K_TOKENS.get(backend, DEFAULT_COST_PER_1K_TOKENS["llamacpp"])


def available_backends() -> list[str]:
    """Return the registered backend names, sorted (``auto`` is accepted too but not listed)."""
    _load_entry_points()
    return sorted(_FACTORIES)


def _load_entry_points() -> None:
    # Built-in and explicitly registered names win over plugins of the same name.
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        _FACTORIES.setdefault(entry_point.name, entry_point.value)


def create_backend(name: str, **settings: Any) -> Backend:
    """Create the backend registered as ``name`` with ``settings`` as keyword arguments.

    ``name="auto"`` detects the platform, chooses a backend and adds the implied settings
    (GPU layers, threads) unless ``settings`` already sets them.
    """
    if name == AUTO:
        choice = choose_backend(detect_platform())
        name, settings = choice.name, {**choice.settings(), **settings}
    if name not in _FACTORIES:
        _load_entry_points()
    try:
        factory = _FACTORIES[name]
    except KeyError:
        valid = ", ".join([AUTO, *available_backends()])
        raise ValueError(f"unknown backend {name!r}; choose one of: {valid}") from None
    return _resolve(factory)(**settings)


def _resolve(factory: str | BackendFactory) -> BackendFactory:
    if not isinstance(factory, str):
        return factory
    module_name, _, attribute = factory.partition(":")
    return cast(BackendFactory, getattr(importlib.import_module(module_name), attribute))


def choose_backend(facts: PlatformFacts) -> BackendChoice:
    """Pick the best backend for ``facts``: MLX on Apple silicon, llama.cpp with GPU offload, else CPU.

    Raises ``BackendUnavailable`` with an install hint when no engine is importable.
    """
    apple_silicon = facts.system == "Darwin" and facts.machine == "arm64"
    if apple_silicon and facts.mlx_importable:
        return BackendChoice("mlx", 0, "Apple silicon with mlx-lm installed: MLX on the unified-memory GPU")
    if facts.llama_cpp_importable and facts.llama_gpu_offload:
        reason = f"llama.cpp with all layers offloaded to the {_gpu_label(facts)}"
        return BackendChoice("llamacpp", -1, reason)
    if facts.llama_cpp_importable:
        threads = max(1, facts.cpu_count - 1)
        note = "; install mlx-lm for the GPU" if apple_silicon else ""
        reason = f"llama.cpp on the CPU with {threads} thread(s) (this build has no GPU offload{note})"
        return BackendChoice("llamacpp", 0, reason, threads=threads)
    where = f"{facts.system} {facts.machine}"
    engines = "llama-cpp-python or mlx-lm"
    raise BackendUnavailable(f"no model engine ({engines}) is importable on {where}; {INSTALL_HINT}")


def _gpu_label(facts: PlatformFacts) -> str:
    if facts.system == "Darwin":
        return "Apple GPU (Metal)"
    if facts.system == "Linux" and facts.machine == "aarch64":
        return "GPU (CUDA build, e.g. NVIDIA Jetson)"
    return "GPU (CUDA build, e.g. NVIDIA RTX)"


def detect_platform() -> PlatformFacts:
    """Gather ``PlatformFacts`` from this machine; imports llama_cpp only to ask about GPU offload."""
    llama_cpp_importable = importlib.util.find_spec("llama_cpp") is not None
    return PlatformFacts(
        system=platform.system(),
        machine=platform.machine(),
        mlx_importable=importlib.util.find_spec("mlx_lm") is not None,
        llama_cpp_importable=llama_cpp_importable,
        llama_gpu_offload=llama_cpp_importable and _llama_supports_gpu_offload(),
        cpu_count=os.cpu_count() or 1,
    )


def _llama_supports_gpu_offload() -> bool:
    try:
        import llama_cpp
    except (ImportError, OSError):
        # A wheel whose shared library fails to load counts as "no offload"; creating the
        # backend later reports the real error with the model path.
        return False
    return bool(llama_cpp.llama_supports_gpu_offload())
