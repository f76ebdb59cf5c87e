"""A subscription whose connection drops reconnects and resumes after the
last message it handed on: nothing published meanwhile is lost or seen
twice."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from stepflow_gateway import StepFlowGateway
from test_client import next_item, register


class Proxy:
    """A TCP relay to the gateway whose connections the test can cut."""

    def __init__(self, target: str) -> None:
        address = urlsplit(target)
        self.host, self.port = address.hostname or "127.0.0.1", address.port or 80
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self.writers += [writer, up_writer]
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer),
                             return_exceptions=True)

    def cut(self) -> None:
        """Drops every relayed connection at once."""
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def test_a_dropped_subscription_resumes_without_loss(base_url: str) -> None:
    proxy = Proxy(base_url)
    async with StepFlowGateway(await proxy.start()) as relayed, \
            StepFlowGateway(base_url) as direct:
        _, channel_id = register(direct)
        seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        kept: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # A direct subscriber keeps the channel's subscription, and so its
        # replay buffer, while the relayed one is away.
        await direct.subscribe_to_channel(channel_id, kept.put_nowait)
        await relayed.subscribe_to_channel(channel_id, seen.put_nowait)
        room = {"roomId": "lobby"}
        await direct.publish_message(channel_id, {"n": 1}, parameters=room)
        assert (await next_item(seen))["payload"] == {"n": 1}
        proxy.cut()
        for n in range(2, 6):
            await direct.publish_message(channel_id, {"n": n}, parameters=room)
        for n in range(1, 6):
            assert (await next_item(kept))["payload"] == {"n": n}
        resumed = [(await next_item(seen))["payload"]["n"] for _ in range(4)]
        assert resumed == [2, 3, 4, 5]
        await direct.publish_message(channel_id, {"n": 6}, parameters=room)
        assert (await next_item(seen))["payload"] == {"n": 6}
        assert seen.empty(), "no message twice"
    await proxy.stop()
