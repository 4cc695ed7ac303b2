"""An agent framework from PyPI that speaks OpenAI, pointed at the gateway: pydantic-ai (issue 20).

Its `Agent` asks for a structured answer through a required tool call (its `final_result` output tool), runs a
function tool the model called, sends the result back as a `role: tool` message and gets the structured answer:
the whole tool loop of a real framework against broker + router + a SmolLM2 llama.cpp agent + gateway. SmolLM2 is
plumbing, not a reasoner: what it says is small-model content, but every call parses and validates."""

from __future__ import annotations

import pytest
from e2e.gateway.fleet import LLAMA_AGENT, GatewayFabric
from pydantic import BaseModel

pydantic_ai = pytest.importorskip("pydantic_ai", reason="pydantic-ai is not installed (dev extra)")
from pydantic_ai.messages import ToolCallPart, ToolReturnPart  # noqa: E402
from pydantic_ai.models.openai import OpenAIChatModel  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402
from pydantic_ai.settings import ModelSettings  # noqa: E402
from pydantic_ai.tools import RunContext, ToolDefinition  # noqa: E402
from pydantic_ai.usage import UsageLimits  # noqa: E402

pytestmark = [pytest.mark.llamacpp, pytest.mark.slow]

SETTINGS = ModelSettings(max_tokens=200, temperature=0.0, parallel_tool_calls=False)
LIMITS = UsageLimits(request_limit=4)  # bounded: a small model that keeps calling tools fails the test, not CI


class City(BaseModel):
    name: str
    country: str
    population: int


def model(fabric: GatewayFabric) -> OpenAIChatModel:
    provider = OpenAIProvider(base_url=f"{fabric.gateway_url}/v1", api_key="unused-on-loopback")
    return OpenAIChatModel(f"agent:{LLAMA_AGENT}", provider=provider)


def test_a_pydantic_ai_agent_gets_a_structured_answer(gateway_fabric: GatewayFabric) -> None:
    agent = pydantic_ai.Agent(model(gateway_fabric), output_type=City, retries=0)
    result = agent.run_sync("Describe Rome.", model_settings=SETTINGS, usage_limits=LIMITS)
    assert isinstance(result.output, City)
    calls = [part for message in result.all_messages() for part in message.parts if isinstance(part, ToolCallPart)]
    assert [call.tool_name for call in calls] == ["final_result"]  # the answer came as a validated tool call


def test_a_pydantic_ai_agent_calls_a_function_tool_then_answers(gateway_fabric: GatewayFabric) -> None:
    asked: list[str] = []
    agent = pydantic_ai.Agent(model(gateway_fabric), output_type=City, retries=0)

    async def once(context: RunContext[None], tool: ToolDefinition) -> ToolDefinition | None:
        return None if asked else tool  # offered until it has run once: then only the answer tool is left

    @agent.tool_plain(prepare=once)
    def population_of(city: str) -> int:
        """The number of people living in a city."""
        asked.append(city)
        return 2_800_000

    result = agent.run_sync(
        "Look up the population of Rome with the tool, then describe Rome.",
        model_settings=SETTINGS,
        usage_limits=LIMITS,
    )
    assert isinstance(result.output, City)
    parts = [part for message in result.all_messages() for part in message.parts]
    tool_names = [part.tool_name for part in parts if isinstance(part, ToolCallPart)]
    assert tool_names == ["population_of", "final_result"], tool_names
    returns = [part for part in parts if isinstance(part, ToolReturnPart) and part.tool_name == "population_of"]
    assert len(asked) == len(returns) == 1, (
        asked,
        tool_names,
    )  # the call ran and its result went back as a tool message
