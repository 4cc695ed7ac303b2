"""One error tree: every exception class the product defines derives from `shared.errors.SymphonyError`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from provisioning.artifacts import SOURCE_PACKAGES as PRODUCT_PACKAGES  # every package of the kit's wheel
from shared.errors import SymphonyError

PRIVATE_CONTROL_FLOW = {"model_store.peers._Busy"}  # caught beside where it is raised; never reaches a caller


def product_modules() -> list[str]:
    names = []
    for package_name in PRODUCT_PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        names.extend(module.name for module in pkgutil.walk_packages(package.__path__, f"{package_name}."))
    return [name for name in names if not name.endswith(".__main__")]


def defined_exceptions() -> list[type[BaseException]]:
    found = []
    for name in product_modules():
        module = importlib.import_module(name)
        found.extend(
            member
            for _, member in inspect.getmembers(module, inspect.isclass)
            if member.__module__ == name and issubclass(member, BaseException)
        )
    return found


def qualified(error: type[BaseException]) -> str:
    return f"{error.__module__}.{error.__qualname__}"


def test_the_walk_sees_the_errors_of_every_room() -> None:
    names = {qualified(error) for error in defined_exceptions()}
    assert {"shared.errors.MessageError", "broker.amqtt_fixes.PacketTooLarge", "model_store.ModelNotFound"} <= names
    assert {"fleet_gateway.app.GatewayError", "bench.data.fetch.DataError"} <= names
    assert names >= PRIVATE_CONTROL_FLOW  # the exemption names a class that still exists


def test_every_exception_the_product_defines_derives_from_symphony_error() -> None:
    outside = [
        qualified(error)
        for error in defined_exceptions()
        if not issubclass(error, SymphonyError) and qualified(error) not in PRIVATE_CONTROL_FLOW
    ]
    assert outside == []


@pytest.mark.parametrize(
    "name",
    [
        "shared.constraints.ConstraintError",
        "edge_agent.personas.UnknownPersona",
        "router.planning.PlanParseError",
        "bench.data.stream.StreamError",
    ],
)
def test_errors_that_callers_catch_as_value_errors_still_are(name: str) -> None:
    module_name, class_name = name.rsplit(".", 1)
    error = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(error, SymphonyError)
    assert issubclass(error, ValueError)


def test_one_name_means_one_error() -> None:
    """`ModelNotFound` is the model store's (no such model file); the gateway's unknown model name has its own."""
    names: dict[str, list[str]] = {}
    for error in defined_exceptions():
        names.setdefault(error.__qualname__, []).append(qualified(error))
    assert {name: where for name, where in names.items() if len(where) > 1} == {}
