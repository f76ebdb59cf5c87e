"""The usage the extension plan shows, typed in as it writes it: the IoT
document registered with its server on the machine's Mosquitto, a
subscription whose callback prints the device data, and a publish that
reports its delivery."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytestmark = pytest.mark.asyncio

from stepflow_gateway import StepFlowGateway

asyncapi_content = {
    "asyncapi": "2.5.0",
    "info": {"title": "IoT Device API", "version": "1.0.0"},
    "servers": {"production": {"url": "mqtt://127.0.0.1:1883", "protocol": "mqtt"}},
    "channels": {
        "device/{deviceId}/data": {
            "publish": {"message": {"$ref": "#/components/messages/DeviceData"}}
        }
    },
    "components": {
        "messages": {
            "DeviceData": {
                "payload": {
                    "type": "object",
                    "properties": {
                        "temperature": {"type": "number"},
                        "humidity": {"type": "number"},
                    },
                }
            }
        }
    },
}


async def test_the_plans_three_calls(gateway_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    gateway = StepFlowGateway(gateway_url)
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    result = gateway.register_asyncapi("IoT API", json.dumps(asyncapi_content))
    channel_id = result["channels"][0]["id"]
    assert result["channels"][0]["address"] == "device/{deviceId}/data"

    async def handle_device_data(message: dict[str, Any]) -> None:
        print(f"Device {message['parameters']['deviceId']}: {message['payload']}")
        await received.put(message)

    await gateway.subscribe_to_channel(channel_id=channel_id, callback=handle_device_data)
    delivery = await gateway.publish_message(
        channel_id=channel_id,
        message_data={"deviceId": "sensor-001", "temperature": 23.5, "humidity": 45.2},
    )
    assert delivery["status"] == "delivered" and delivery["protocol"] == "mqtt", delivery
    assert delivery["address"] == "device/sensor-001/data"
    message = await asyncio.wait_for(received.get(), 10)
    assert message["payload"]["temperature"] == 23.5
    assert "Device sensor-001: " in capsys.readouterr().out
    await gateway.aclose()
