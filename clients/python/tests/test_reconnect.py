"""A subscription whose connection drops reconnects and resumes after the
last message it handed on: nothing published meanwhile is lost or seen
twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from helpers import WAIT, next_item, register_memory_iot
from stepflow_gateway import StepFlowGateway

pytestmark = pytest.mark.asyncio


class Proxy:
    """A TCP relay to the gateway that the test can cut: `cut` drops every
    relayed connection and refuses new ones until `reopen`."""

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 80)
        self.requests: list[bytes] = []
        self.refused = asyncio.Event()
        self._open = True
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        """Listens on a free port; the base URL that leads to the gateway."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def cut(self) -> None:
        """Drops every relayed connection and refuses new ones; `refused`
        is set once one has been refused."""
        self._open = False
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    def reopen(self) -> None:
        """Relays new connections again."""
        self._open = True

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            writer.transport.abort()
            self.refused.set()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, upstream_writer]
        request = await reader.read(65536)
        self.requests.append(request)
        upstream_writer.write(request)
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer),
                             return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copies one direction of a relayed connection until it ends."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@pytest_asyncio.fixture
async def proxy(gateway_url: str) -> AsyncIterator[Proxy]:
    relay = Proxy(gateway_url)
    yield relay
    await relay.stop()


async def test_a_dropped_subscription_resumes_without_loss(gateway_url: str,
                                                           proxy: Proxy) -> None:
    proxied_url = await proxy.start()
    async with StepFlowGateway(gateway_url) as direct, \
            StepFlowGateway(proxied_url) as relayed:
        _, channel_id = register_memory_iot(direct)
        device = {"deviceId": "d1"}
        seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        kept: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # The direct subscription, on the same parameters, keeps the
        # channel's broker-side subscription and so its replay buffer open
        # while the relayed one is away.
        await direct.subscribe_to_channel(channel_id, kept.put_nowait, parameters=device)
        await relayed.subscribe_to_channel(channel_id, seen.put_nowait, parameters=device)

        async def publish(n: int) -> None:
            await direct.publish_message(channel_id, {"temperature": n}, parameters=device)
            assert (await next_item(kept))["payload"] == {"temperature": n}

        await publish(1)
        first = await next_item(seen)
        assert first["payload"] == {"temperature": 1}
        proxy.cut()
        for n in range(2, 6):
            await publish(n)
        await asyncio.wait_for(proxy.refused.wait(), WAIT)
        proxy.reopen()
        resumed = [(await next_item(seen))["payload"]["temperature"] for _ in range(4)]
        assert resumed == [2, 3, 4, 5]
        await publish(6)
        assert (await next_item(seen))["payload"] == {"temperature": 6}
        assert seen.empty(), "a message reached the callback twice"
        resume_header = f"last-event-id: {first['id']}\r\n".encode()
        assert any(resume_header in request.lower() for request in proxy.requests)
