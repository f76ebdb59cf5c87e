"""Real gateways for the tests: the binary built in the workspace, started
on a free port with a SQLite database in a temporary folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gateway_process import GatewayProcess, gateway_binary


@pytest.fixture(scope="session")
def new_gateway() -> Iterator[Callable[[str], GatewayProcess]]:
    """Makes gateways (not yet started) with extra config; all of them are
    stopped when the test session ends."""
    binary = gateway_binary()
    made: list[GatewayProcess] = []

    def make(extra_config: str = "") -> GatewayProcess:
        made.append(GatewayProcess(binary, extra_config))
        return made[-1]

    yield make
    for gateway in made:
        gateway.stop()


@pytest.fixture(scope="session")
def gateway_url(new_gateway: Callable[[str], GatewayProcess]) -> str:
    """The base URL of the gateway most tests share (no authentication)."""
    return new_gateway("").start()
