"""Which kind of board each host is, which wheels fit it, and where node.yaml says its shipped model lives."""

from __future__ import annotations

import pytest

from provisioning.errors import ProvisioningError
from provisioning.fleet import FleetSpec
from provisioning.inventory import parse_ini_inventory
from provisioning.plan import node_config, plan_fleet
from provisioning.targets import (
    BUNDLED_MODEL_FILE,
    TargetKind,
    check_apple_models,
    model_url_pin,
    shipped_model_name,
    target_kind,
    wheel_fits,
)
from shared.config import AgentConfig

INVENTORY = parse_ini_inventory(
    """
[brokers]
hub ansible_host=10.0.0.1
[jetson]
jetson-1 edge_agent_hardware=cuda
[jetson:vars]
symphony_target_platform=manylinux2014_aarch64
symphony_target_python=3.10
[macs]
mac-mini symphony_target_platform=macosx_14_0_arm64
"""
)
X86 = TargetKind("linux_x86_64", "3.11", "cpu")


def test_a_host_without_variables_is_the_control_nodes_kind_and_cpu() -> None:
    kind = target_kind(INVENTORY, "hub", platform="linux_x86_64", python="3.11")
    assert kind == X86 and kind.name == "linux_x86_64-py3.11-cpu"


def test_group_variables_and_host_variables_make_the_kind() -> None:
    assert target_kind(INVENTORY, "jetson-1") == TargetKind("manylinux2014_aarch64", "3.10", "cuda")
    assert target_kind(INVENTORY, "mac-mini", python="3.12").accelerator == "apple"


def test_an_unknown_accelerator_is_refused() -> None:
    inventory = parse_ini_inventory("[all]\nboard edge_agent_hardware=tpu\n")
    with pytest.raises(ProvisioningError, match="edge_agent_hardware 'tpu'"):
        target_kind(inventory, "board")


@pytest.mark.parametrize(
    ("filename", "fits"),
    [
        ("llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl", True),
        ("llama_cpp_python-0.3.36-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True),
        ("llama_cpp_python-0.3.36-cp310-cp310-linux_x86_64.whl", False),  # another Python
        ("llama_cpp_python-0.3.36-py3-none-linux_aarch64.whl", False),  # another architecture
        ("llama_cpp_python-0.3.36-py3-none-macosx_14_0_arm64.whl", False),
        ("not-a-wheel.whl", False),
    ],
)
def test_wheel_fits_the_python_and_platform_of_the_kind(filename: str, fits: bool) -> None:
    assert wheel_fits(filename, X86) is fits


def test_linux_kinds_download_manylinux_wheels() -> None:
    assert "manylinux2014_x86_64" in X86.pip_platforms() and "linux_x86_64" in X86.pip_platforms()
    assert TargetKind("macosx_14_0_arm64", "3.12", "apple").pip_platforms() == ["macosx_14_0_arm64"]


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("default", BUNDLED_MODEL_FILE),
        ("smollm2", BUNDLED_MODEL_FILE),
        ("https://example.org/models/qwen-0.5b.Q4_K_M.gguf?download=1", "qwen-0.5b.Q4_K_M.gguf"),
        ("models/smollm2-mlx/", "smollm2-mlx"),
        ("/srv/models/phi.gguf", "phi.gguf"),
    ],
)
def test_each_model_spec_gets_a_file_name_on_the_board(spec: str, name: str) -> None:
    assert shipped_model_name(spec) == name


def test_a_plain_http_model_url_must_pin_its_sha256() -> None:
    """Issue 19 item 12: before, `http://` URLs were fetched unpinned (anyone on the path picks the model)."""
    with pytest.raises(ProvisioningError, match=r"plain http without a pinned checksum"):
        shipped_model_name("http://models.lan/qwen.gguf")
    pin = "ab" * 32
    assert shipped_model_name(f"http://models.lan/qwen.gguf#sha256={pin}") == "qwen.gguf"
    assert model_url_pin(f"http://models.lan/qwen.gguf#sha256={pin.upper()}") == pin
    assert model_url_pin("https://example.org/qwen.gguf") is None  # https alone stays allowed
    with pytest.raises(ProvisioningError, match="64 hex"):
        model_url_pin("https://example.org/qwen.gguf#md5=abc")


def test_a_model_url_must_name_a_gguf_file() -> None:
    with pytest.raises(ProvisioningError, match=r"must name a \.gguf file"):
        shipped_model_name("https://example.org/download")


def test_an_apple_board_with_the_bundled_gguf_stops_with_a_clear_message() -> None:
    apple = TargetKind("macosx_14_0_arm64", "3.12", "apple")
    agent = AgentConfig(agent_id="mac-mini-planner", preset="planner", backend="mlx")
    with pytest.raises(ProvisioningError, match="download an MLX model") as raised:
        check_apple_models("mac-mini", apple, (agent,))
    assert "mac-mini-planner" in str(raised.value)
    check_apple_models("mac-mini", apple, (agent.model_copy(update={"model": "models/smollm2-mlx"}),))
    check_apple_models("mac-mini", apple, (agent.model_copy(update={"backend": "echo"}),))
    check_apple_models("hub", X86, (agent,))


def test_node_yaml_names_the_shipped_model_under_each_boards_prefix() -> None:
    inventory = parse_ini_inventory("[boards]\nb1\nb2\n")
    fleet = FleetSpec.model_validate(
        {
            "prefix": "/srv/fleet/{host}",
            "broker": {"hosts": ["b1"], "tls": False},
            "agents": {
                "b1": [{"preset": "math", "backend": "llamacpp"}],
                "b2": [{"preset": "writer", "backend": "echo"}],
            },
        }
    )
    plan = plan_fleet(fleet, inventory)
    first, second = (node_config(plan, node, "secret") for node in plan.nodes)
    assert first["agents"][0]["model"] == f"/srv/fleet/b1/var/lib/symphony-edge/models/{BUNDLED_MODEL_FILE}"
    assert first["state_dir"] == "/srv/fleet/b1/var/lib/symphony-edge"
    assert "model" not in second["agents"][0]  # echo reads no model file
    assert second["state_dir"] == "/srv/fleet/b2/var/lib/symphony-edge"
    assert plan.paths.for_ansible().config_dir == "/srv/fleet/{{ inventory_hostname }}/etc/symphony-edge"
