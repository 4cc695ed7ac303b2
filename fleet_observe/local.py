"""The doctor's checks of this machine (I/O on files and the platform): model files, a model load, `auto`."""

from __future__ import annotations

import time
from pathlib import Path

from edge_agent.backends.base import BackendUnavailable
from fleet_observe.checks import CheckResult, backend_choice, model_file, model_load
from shared.config import AgentConfig, NodeConfig

LOCAL_MODEL_BACKENDS = frozenset({"auto", "llamacpp", "mlx"})


def agents_of(config: NodeConfig) -> list[tuple[str, AgentConfig]]:
    """(agent id, config) of every agent `edge-agent start` would run, ids as the runtime derives them."""
    from edge_agent.runtime.assembly import agent_profile

    agents = config.agents or (AgentConfig(),)
    return [(agent_profile(agent, index, config.node_id, "").agent_id, agent) for index, agent in enumerate(agents)]


def check_models(config: NodeConfig, load: bool) -> list[CheckResult]:
    results = []
    for agent_id, agent in agents_of(config):
        if agent.backend not in LOCAL_MODEL_BACKENDS:
            results.append(CheckResult(f"model of {agent_id}", True, f"backend {agent.backend!r} needs no model file"))
            continue
        path, error = _resolve(agent.model)
        results.append(model_file(agent_id, agent.model, str(path) if path else None, error))
        if load and path is not None and path.suffix == ".gguf":
            results.append(_load(agent_id, path))
    return results


def check_auto_backend(config: NodeConfig) -> CheckResult:
    """Which backend `auto` picks here and why; a failure matters only when some agent uses `auto`."""
    from edge_agent.backends.registry import choose_backend, detect_platform

    required = any(agent.backend == "auto" for _, agent in agents_of(config))
    try:
        choice = choose_backend(detect_platform())
    except BackendUnavailable as error:
        return backend_choice(None, "", str(error), required)
    return backend_choice(choice.name, choice.reason, None, required)


def _resolve(spec: str) -> tuple[Path | None, str | None]:
    from model_store import ModelError, resolve_model

    try:
        return resolve_model(spec), None
    except ModelError as error:
        return None, str(error)


def _load(agent_id: str, path: Path) -> CheckResult:
    started = time.perf_counter()
    try:
        from llama_cpp import Llama

        model = Llama(model_path=str(path), n_ctx=256, verbose=False)
        model.close()
    except Exception as error:  # any failure of the engine is the finding this check reports
        return model_load(agent_id, str(path), None, f"{type(error).__name__}: {error}")
    return model_load(agent_id, str(path), time.perf_counter() - started, None)
