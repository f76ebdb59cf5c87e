"""Credentials: an API key or a JWT, sent on HTTP calls and on the
WebSocket handshake of a gateway with authentication on."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from gateway_process import GatewayProcess
from helpers import MEMORY_IOT_YAML, next_item, unique_name
from stepflow_gateway import StepFlowError, StepFlowGateway

pytestmark = pytest.mark.asyncio

SECRET = "client-tests-secret-0123456789abcdef"

AUTH_CONFIG = f"""
[auth]
enabled = true
[auth.jwt]
hs256_secret = "{SECRET}"
[[auth.rules]]
role = "admin"
actions = ["publish", "subscribe"]
"""


def jwt(subject: str, roles: list[str]) -> str:
    """An HS256 token for `subject` with `roles`, valid for ten minutes."""
    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": subject, "roles": roles, "exp": int(time.time()) + 600}
    body = part(json.dumps(claims).encode())
    signature = hmac.new(SECRET.encode(), f"{header}.{body}".encode(), hashlib.sha256)
    return f"{header}.{body}.{part(signature.digest())}"


@pytest.fixture(scope="module")
def secured(new_gateway: Callable[[str], GatewayProcess]) -> tuple[str, str]:
    """A gateway with authentication on, and an admin API key for it."""
    gateway = new_gateway(AUTH_CONFIG)
    key = gateway.command("issue-key", "--name", "ops", "--role", "admin").strip()
    return gateway.start(), key


async def test_calls_without_credentials_are_401(secured: tuple[str, str]) -> None:
    url, _ = secured
    async with StepFlowGateway(url) as anonymous:
        with pytest.raises(StepFlowError) as refused:
            anonymous.list_asyncapis()
        assert refused.value.status == 401
        with pytest.raises(StepFlowError) as refused:
            await anonymous.subscribe_to_channel("any-channel", print)
        assert refused.value.status == 401


async def test_an_api_key_registers_publishes_and_subscribes(secured: tuple[str, str]) -> None:
    url, key = secured
    async with StepFlowGateway(url, api_key=key) as gateway:
        document = gateway.register_asyncapi(unique_name("IoT"), MEMORY_IOT_YAML)
        channel_id = document["channels"][0]["id"]
        received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await gateway.subscribe_to_channel(channel_id, received.put_nowait)
        await gateway.publish_message(channel_id, {"deviceId": "d1", "temperature": 3})
        assert (await next_item(received))["payload"] == {"deviceId": "d1", "temperature": 3}


async def test_a_token_wins_over_an_api_key(secured: tuple[str, str]) -> None:
    url, _ = secured
    async with StepFlowGateway(url, api_key="not-a-key", token=jwt("ops", ["admin"])) as gateway:
        document = gateway.register_asyncapi(unique_name("IoT"), MEMORY_IOT_YAML)
        assert document["id"] in {entry["id"] for entry in gateway.list_asyncapis()}


async def test_a_subscription_no_rule_grants_is_403(secured: tuple[str, str]) -> None:
    url, key = secured
    with StepFlowGateway(url, api_key=key) as admin:
        channel_id = admin.register_asyncapi(unique_name("IoT"),
                                             MEMORY_IOT_YAML)["channels"][0]["id"]
    async with StepFlowGateway(url, token=jwt("viewer", ["viewer"])) as viewer:
        with pytest.raises(StepFlowError) as refused:
            await viewer.subscribe_to_channel(channel_id, print)
        assert refused.value.status == 403
        assert refused.value.type
