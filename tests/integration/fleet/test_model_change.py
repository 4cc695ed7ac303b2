"""The model of 3 agents on 3 nodes changes under continuous load (real processes, both brokers): no task is lost
or failed, and each node downloads the new model once, from a peer (never from outside the fabric)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_a_rolling_model_change_under_load_loses_nothing(kind: str) -> None:
    from bench import model_change
    from broker.mosquitto import find_mosquitto
    from model_store import ModelNotFound, default_model_path

    if kind == "mosquitto" and find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    try:
        default_model_path()
    except ModelNotFound:
        pytest.skip("the bundled SmolLM2 (the model file that travels) is not installed")
    result = model_change.measure(nodes=3, kind=kind, backend="echo", clients=3, before_s=3.0, after_s=2.0)
    assert result["rollout_ok"], result
    assert result["answered"] > 0 and result["failed"] == 0 and result["lost"] == 0, result
    assert result["answered"] == result["submitted"], result
    for node, sources in result["downloads"].items():
        assert len(sources) == 1, (node, sources)  # once
        assert sources[0] in {"seed", "node-1", "node-2", "node-3"} and sources[0] != node, (node, sources)  # a peer
