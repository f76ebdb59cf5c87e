"""Publishing and subscribing on the gateway's in-memory broker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from helpers import next_item, register_memory_iot, wait_until
from stepflow_gateway import StepFlowError, StepFlowGateway

pytestmark = pytest.mark.asyncio

Messages = asyncio.Queue[dict[str, Any]]


@pytest_asyncio.fixture
async def gateway(gateway_url: str) -> AsyncIterator[StepFlowGateway]:
    async with StepFlowGateway(gateway_url) as client:
        yield client


@pytest.fixture
def channel_id(gateway: StepFlowGateway) -> str:
    """The channel of a fresh in-memory IoT document."""
    return register_memory_iot(gateway)[1]


async def test_a_publish_reaches_a_plain_callback(gateway: StepFlowGateway,
                                                  channel_id: str) -> None:
    received: Messages = asyncio.Queue()
    await gateway.subscribe_to_channel(channel_id, received.put_nowait)
    delivery = await gateway.publish_message(
        channel_id, {"deviceId": "sensor-001", "temperature": 25.5, "humidity": 60.2})
    assert delivery["status"] == "delivered"
    assert delivery["address"] == "device/sensor-001/data"
    assert delivery["protocol"] == "memory"
    assert delivery["channel_id"] == channel_id
    assert delivery["call_log_id"]
    message = await next_item(received)
    assert message["type"] == "message"
    assert message["payload"] == {"deviceId": "sensor-001", "temperature": 25.5,
                                  "humidity": 60.2}
    assert message["parameters"] == {"deviceId": "sensor-001"}
    assert message["address"] == "device/sensor-001/data"
    assert message["message"] == "DeviceData"
    assert message["channel_id"] == channel_id
    assert message["id"] and message["received_at"]


async def test_a_publish_reaches_an_async_callback(gateway: StepFlowGateway,
                                                   channel_id: str) -> None:
    received: Messages = asyncio.Queue()

    async def on_message(message: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        await received.put(message)

    await gateway.subscribe_to_channel(channel_id, on_message)
    await gateway.publish_message(channel_id, {"temperature": 21.0},
                                  parameters={"deviceId": "d7"}, headers={"trace": "t-1"})
    message = await next_item(received)
    assert message["payload"] == {"temperature": 21.0}
    assert message["parameters"] == {"deviceId": "d7"}


async def test_parameters_fix_what_a_subscription_receives(gateway: StepFlowGateway,
                                                           channel_id: str) -> None:
    only_d1: Messages = asyncio.Queue()
    every: Messages = asyncio.Queue()
    await gateway.subscribe_to_channel(channel_id, only_d1.put_nowait,
                                       parameters={"deviceId": "d1"})
    await gateway.subscribe_to_channel(channel_id, every.put_nowait)
    for device, temperature in [("d2", 1), ("d1", 2), ("d2", 3), ("d1", 4)]:
        await gateway.publish_message(channel_id, {"deviceId": device,
                                                   "temperature": temperature})
    everything = [(await next_item(every))["payload"]["temperature"] for _ in range(4)]
    assert everything == [1, 2, 3, 4]
    d1 = [(await next_item(only_d1))["payload"]["temperature"] for _ in range(2)]
    assert d1 == [2, 4]
    assert only_d1.empty()


async def test_unsubscribe_ends_the_callbacks(gateway: StepFlowGateway,
                                              channel_id: str) -> None:
    ended: Messages = asyncio.Queue()
    kept: Messages = asyncio.Queue()
    subscription = await gateway.subscribe_to_channel(channel_id, ended.put_nowait)
    await gateway.subscribe_to_channel(channel_id, kept.put_nowait)
    await gateway.publish_message(channel_id, {"deviceId": "d1", "temperature": 1})
    assert (await next_item(ended))["payload"]["temperature"] == 1
    assert (await next_item(kept))["payload"]["temperature"] == 1
    await gateway.unsubscribe(subscription)
    await gateway.publish_message(channel_id, {"deviceId": "d1", "temperature": 2})
    assert (await next_item(kept))["payload"]["temperature"] == 2
    assert ended.empty(), "a message reached the callback after unsubscribe"
    with pytest.raises(KeyError):
        await gateway.unsubscribe(subscription)


async def test_a_callback_may_unsubscribe_itself(gateway: StepFlowGateway,
                                                 channel_id: str) -> None:
    once: Messages = asyncio.Queue()
    kept: Messages = asyncio.Queue()
    subscription = ""

    async def take_one(message: dict[str, Any]) -> None:
        await once.put(message)
        await gateway.unsubscribe(subscription)

    subscription = await gateway.subscribe_to_channel(channel_id, take_one)
    await gateway.subscribe_to_channel(channel_id, kept.put_nowait)
    for temperature in (1, 2):
        await gateway.publish_message(channel_id, {"deviceId": "d1", "temperature": temperature})
    assert [(await next_item(kept))["payload"]["temperature"] for _ in range(2)] == [1, 2]
    assert (await next_item(once))["payload"]["temperature"] == 1
    assert once.empty()


async def test_a_failing_callback_does_not_end_the_subscription(
        gateway: StepFlowGateway, channel_id: str, caplog: pytest.LogCaptureFixture) -> None:
    seen: Messages = asyncio.Queue()

    def fail_on_first(message: dict[str, Any]) -> None:
        seen.put_nowait(message)
        if message["payload"]["temperature"] == 1:
            raise RuntimeError("callback broke")

    await gateway.subscribe_to_channel(channel_id, fail_on_first)
    for temperature in (1, 2):
        await gateway.publish_message(channel_id, {"deviceId": "d1", "temperature": temperature})
    assert [(await next_item(seen))["payload"]["temperature"] for _ in range(2)] == [1, 2]
    failures = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert failures and failures[0].exc_info is not None
    assert "callback broke" in str(failures[0].exc_info[1])


async def test_statistics_count_the_channels_publishes(gateway: StepFlowGateway,
                                                       channel_id: str) -> None:
    def published() -> int:
        channels = gateway.statistics(channel_id=channel_id)["channels"]
        return int(channels.get(channel_id, {}).get("published", 0))

    before = published()
    for temperature in range(3):
        await gateway.publish_message(channel_id, {"deviceId": "d1",
                                                   "temperature": temperature})
    await wait_until(lambda: published() >= before + 3 or None,
                     "three more publishes in the statistics")
    assert published() == before + 3


async def test_connection_status_lists_the_brokers(gateway: StepFlowGateway,
                                                   channel_id: str) -> None:
    [channel] = [entry for entry in gateway.list_channels() if entry["id"] == channel_id]
    broker_id = channel["broker"]["id"]
    status = gateway.connection_status()
    brokers = {broker["broker_id"]: broker for broker in status["brokers"]}
    assert brokers[broker_id]["protocol"] == "memory"
    assert brokers[broker_id]["state"] == "connected"
    assert set(status["sessions"]) >= {"websocket", "sse"}


async def test_a_payload_against_its_schema_is_422(gateway: StepFlowGateway,
                                                   channel_id: str) -> None:
    with pytest.raises(StepFlowError) as refused:
        await gateway.publish_message(channel_id, {"deviceId": "d1", "temperature": "hot"})
    error = refused.value
    assert error.status == 422
    assert error.type == "urn:stepflow:problem:validation"
    assert [item["pointer"] for item in error.errors] == ["/temperature"]
    assert error.errors[0]["rule"] == "type"
    assert error.call_log_id
    assert error.problem["status"] == 422
    assert "/temperature" in str(error) and str(error).startswith("422 ")


async def test_a_missing_parameter_is_named(gateway: StepFlowGateway, channel_id: str) -> None:
    with pytest.raises(StepFlowError) as refused:
        await gateway.publish_message(channel_id, {"temperature": 1})
    assert refused.value.status == 400
    assert refused.value.parameter == "deviceId"


async def test_publishing_to_an_unknown_channel_is_404(gateway: StepFlowGateway) -> None:
    with pytest.raises(StepFlowError) as refused:
        await gateway.publish_message("no-such-channel", {"temperature": 1})
    assert refused.value.status == 404
    assert "no-such-channel" in (refused.value.detail or "")


async def test_subscribing_to_an_unknown_channel_is_404(gateway: StepFlowGateway) -> None:
    with pytest.raises(StepFlowError) as refused:
        await gateway.subscribe_to_channel("no-such-channel", print)
    assert refused.value.status == 404
    assert refused.value.type == "urn:stepflow:problem:not-found"
    assert "no-such-channel" in (refused.value.detail or "")


async def test_a_subscription_parameter_that_would_widen_the_topic_is_400(
        gateway: StepFlowGateway, channel_id: str) -> None:
    with pytest.raises(StepFlowError) as refused:
        await gateway.subscribe_to_channel(channel_id, print, parameters={"deviceId": "+"})
    assert refused.value.status == 400
    assert "`deviceId`" in (refused.value.detail or "")
