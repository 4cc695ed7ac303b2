"""The gateway fuzzed from its own OpenAPI schema (Schemathesis): no 5xx, no hang, every error in OpenAI's shape.

The app runs in-process (ASGI) over the fake fabric, once with API keys and quotas, once anonymous on loopback;
valid and invalid requests both (Schemathesis' positive and negative modes). The run against a real fabric is
tests/e2e/gateway/test_gateway_fuzz_fabric.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from gateway_fake import FakeFabric
from hypothesis import HealthCheck, settings

from fleet_gateway.app import create_app
from fleet_gateway.limits import GatewayLimits
from fleet_gateway.quotas import QuotaBook
from shared.http_auth import Authenticator, ClientAccount, KeyQuota

KEY = "sk-symphony-fuzz-0123456789"
QUOTA = KeyQuota(concurrent_tasks=2, max_cot_count=3, max_plan_k=2, max_deadline_s=30)
INTERNALS = ("mqtt://", "Traceback", "KeyError", "/var/lib", "pydantic.dev", "10.0.0.2")
EXAMPLES = 60


def keyed_app() -> Any:
    auth = Authenticator({KEY: ClientAccount("fuzzer", quota=QUOTA)})
    return create_app(FakeFabric(), auth, GatewayLimits(max_body_bytes=256 * 1024), QuotaBook())  # type: ignore[arg-type]


def anonymous_app() -> Any:
    return create_app(FakeFabric(), Authenticator(), GatewayLimits(), QuotaBook())  # type: ignore[arg-type]


keyed = schemathesis.openapi.from_asgi("/openapi.json", keyed_app())
anonymous = schemathesis.openapi.from_asgi("/openapi.json", anonymous_app(), headers={"Host": "localhost"})
deep = schemathesis.openapi.from_asgi("/openapi.json", keyed_app()).include(path="/v1/chat/completions")
MODELS = ("symphony", "symphony-vote-3", "symphony-vote-5", "agent:n1-math")


@deep.hook  # type: ignore[misc]
def map_body(context: Any, body: Any) -> Any:
    """Past validation: a model and a last user turn that exist, every other field as generated (reaches the fabric)."""
    if not isinstance(body, dict):
        return body
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    fixed = {**body, "model": MODELS[len(json.dumps(body)) % len(MODELS)], "n": 1}
    fixed["messages"] = [*messages[:3], {"role": "user", "content": "What is 6 * 7?"}]
    for unsupported in ("tools", "functions"):
        fixed.pop(unsupported, None)
    return fixed


def check_reply(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = json.loads(response.content)["error"]
        assert isinstance(error["message"], str) and error["type"], error
        assert not any(internal in response.text for internal in INTERNALS), response.text


@pytest.mark.timeout(600)
@keyed.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzzing_the_keyed_gateway_finds_no_server_error(case: Any) -> None:
    check_reply(case.call(headers={"Authorization": f"Bearer {KEY}"}))


@pytest.mark.timeout(600)
@deep.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzzing_tasks_that_reach_the_fabric_finds_no_server_error(case: Any) -> None:
    check_reply(case.call(headers={"Authorization": f"Bearer {KEY}"}))


@pytest.mark.timeout(600)
@anonymous.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzzing_the_anonymous_gateway_finds_no_server_error(case: Any) -> None:
    check_reply(case.call(headers={"Host": "localhost"}))
