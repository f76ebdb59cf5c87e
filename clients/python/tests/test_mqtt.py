"""One round trip through a real broker: the machine's Mosquitto."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import pytest

from helpers import IOT_YAML, next_item, unique_name, wait_until
from stepflow_gateway import StepFlowGateway

pytestmark = pytest.mark.asyncio

MOSQUITTO = ("127.0.0.1", 1883)


def require_mosquitto() -> None:
    """Fails the test with a clear message when nothing listens on 1883."""
    try:
        socket.create_connection(MOSQUITTO, timeout=2).close()
    except OSError as error:
        pytest.fail(f"Mosquitto is not reachable on {MOSQUITTO[0]}:{MOSQUITTO[1]}: {error}",
                    pytrace=False)


async def test_a_publish_reaches_a_subscriber_through_mosquitto(gateway_url: str) -> None:
    require_mosquitto()
    async with StepFlowGateway(gateway_url) as gateway:
        document = gateway.register_asyncapi(unique_name("IoT Device API"), IOT_YAML,
                                             base_url="mqtt://127.0.0.1:1883")
        channel_id = document["channels"][0]["id"]
        [broker] = document["brokers"]
        assert broker["protocol"] == "mqtt" and broker["url"] == "mqtt://127.0.0.1:1883"

        def connected() -> bool | None:
            states = {b["broker_id"]: b["state"] for b in gateway.connection_status()["brokers"]}
            return states.get(broker["id"]) == "connected" or None

        await wait_until(connected, "the gateway's connection to Mosquitto")
        device = f"sensor-{uuid.uuid4().hex[:8]}"
        received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await gateway.subscribe_to_channel(channel_id, received.put_nowait,
                                           parameters={"deviceId": device})
        delivery = await gateway.publish_message(
            channel_id, {"deviceId": device, "temperature": 25.5, "humidity": 60.2})
        assert delivery["status"] == "delivered" and delivery["protocol"] == "mqtt"
        assert delivery["address"] == f"device/{device}/data"
        message = await next_item(received)
        assert message["payload"] == {"deviceId": device, "temperature": 25.5, "humidity": 60.2}
        assert message["parameters"] == {"deviceId": device}
        assert message["address"] == f"device/{device}/data"
