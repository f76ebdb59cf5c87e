"""Every method of the client against a running gateway, on the embedded
in-memory broker unless a test says otherwise."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from stepflow_gateway import StepFlowError, StepFlowGateway

CHAT = """asyncapi: 3.0.0
info: {title: Chat, version: '1'}
channels:
  room:
    address: rooms/{roomId}
    messages:
      said:
        payload:
          type: object
          required: [n]
          properties: {n: {type: integer}}
"""

WAIT = 10.0


def register(gateway: StepFlowGateway) -> tuple[dict[str, Any], str]:
    """A fresh Chat document and its channel's id."""
    document = gateway.register_asyncapi(f"Chat {uuid.uuid4().hex}", CHAT, version="7")
    return document, document["channels"][0]["id"]


async def next_item(queue: asyncio.Queue[Any]) -> Any:
    return await asyncio.wait_for(queue.get(), WAIT)


def test_documents_channels_and_schemas_are_listed(base_url: str) -> None:
    with StepFlowGateway(base_url) as gateway:
        document, channel_id = register(gateway)
        assert document["version"] == "7"
        assert document["channels"][0]["address"] == "rooms/{roomId}"
        names = [d["name"] for d in gateway.list_asyncapis()]
        assert document["name"] in names
        channels = gateway.list_channels(asyncapi_document_id=document["id"])
        assert [c["id"] for c in channels] == [channel_id]
        message_id = channels[0]["messages"][0]["id"]
        schema = gateway.get_message_schema(message_id)
        assert schema["payload"]["required"] == ["n"], schema


async def test_published_messages_reach_plain_and_async_callbacks(base_url: str) -> None:
    async with StepFlowGateway(base_url) as gateway:
        _, channel_id = register(gateway)
        plain: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        awaited: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_message(message: dict[str, Any]) -> None:
            await awaited.put(message)

        first = await gateway.subscribe_to_channel(channel_id, plain.put_nowait)
        second = await gateway.subscribe_to_channel(channel_id, on_message)
        assert first != second
        outcome = await gateway.publish_message(channel_id, {"n": 1},
                                                parameters={"roomId": "lobby"})
        assert outcome["status"] == "delivered" and outcome["address"] == "rooms/lobby"
        for queue in (plain, awaited):
            message = await next_item(queue)
            assert message["payload"] == {"n": 1}
            assert message["parameters"] == {"roomId": "lobby"}


async def test_parameters_narrow_a_subscription_and_unsubscribe_ends_it(base_url: str) -> None:
    async with StepFlowGateway(base_url) as gateway:
        _, channel_id = register(gateway)
        lobby: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        every: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        narrow = await gateway.subscribe_to_channel(channel_id, lobby.put_nowait,
                                                    parameters={"roomId": "lobby"})
        await gateway.subscribe_to_channel(channel_id, every.put_nowait)
        for n, room in enumerate(["kitchen", "lobby"]):
            await gateway.publish_message(channel_id, {"n": n}, parameters={"roomId": room})
        assert (await next_item(lobby))["parameters"] == {"roomId": "lobby"}
        await next_item(every)
        await next_item(every)
        await gateway.unsubscribe(narrow)
        await gateway.publish_message(channel_id, {"n": 2}, parameters={"roomId": "lobby"})
        assert (await next_item(every))["payload"] == {"n": 2}
        assert lobby.empty(), "no message after unsubscribe"
        with pytest.raises(KeyError):
            await gateway.unsubscribe(narrow)


async def test_statistics_and_connection_status(base_url: str) -> None:
    async with StepFlowGateway(base_url) as gateway:
        document, channel_id = register(gateway)
        for n in range(3):
            await gateway.publish_message(channel_id, {"n": n}, parameters={"roomId": "a"})
        stats = gateway.statistics(asyncapi_document_id=document["id"])
        assert stats["channels"][channel_id]["published"] == 3, stats
        status = gateway.connection_status()
        assert any(b["protocol"] == "memory" for b in status["brokers"]), status


async def test_refusals_carry_the_problem_document(base_url: str) -> None:
    async with StepFlowGateway(base_url) as gateway:
        _, channel_id = register(gateway)
        with pytest.raises(StepFlowError) as invalid:
            await gateway.publish_message(channel_id, {"n": "one"}, parameters={"roomId": "a"})
        assert invalid.value.status == 422
        assert invalid.value.errors[0]["pointer"] == "/n", invalid.value.problem
        assert "/n" in str(invalid.value)
        with pytest.raises(StepFlowError) as missing:
            await gateway.publish_message(channel_id, {"n": 1})
        assert missing.value.status == 400 and missing.value.parameter == "roomId"
        with pytest.raises(StepFlowError) as unknown:
            await gateway.subscribe_to_channel("no-such-channel", print)
        assert unknown.value.status == 404
        with pytest.raises(StepFlowError) as taken:
            gateway.register_asyncapi(gateway.list_asyncapis()[0]["name"], CHAT)
        assert taken.value.status == 409
