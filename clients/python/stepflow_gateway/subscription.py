"""A WebSocket subscription that outlives dropped connections: it
reconnects with backoff and resumes after the last message it handed on,
through the `Last-Event-ID` header."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Union

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .errors import StepFlowError

log = logging.getLogger("stepflow_gateway")

Callback = Callable[[dict[str, Any]], Union[None, Awaitable[None]]]

FIRST_DELAY = 0.1
MAX_DELAY = 5.0


class Subscription:
    """One subscription: its socket of the moment and the task reading it."""

    def __init__(self, url: str, headers: dict[str, str], callback: Callback) -> None:
        self.url = url
        self.headers = headers
        self.callback = callback
        self.last_id: str | None = None
        self.socket: ClientConnection | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connects and waits for the gateway's `subscribed` frame; a
        refusal raises StepFlowError with the gateway's problem."""
        self.socket = await self._open()
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Ends the subscription and closes its socket."""
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        if self.socket is not None:
            await self.socket.close()

    async def _open(self) -> ClientConnection:
        headers = dict(self.headers)
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        try:
            socket = await connect(self.url, additional_headers=headers, max_size=None)
        except InvalidStatus as refused:
            raise StepFlowError.from_body(refused.response.status_code,
                                          bytes(refused.response.body or b"")) from None
        first = json.loads(await socket.recv())
        if first.get("type") != "subscribed":
            await socket.close()
            raise StepFlowError(502, {"detail": f"unexpected first frame: {first}"})
        return socket

    async def _run(self) -> None:
        """Reads frames until cancelled, reconnecting whenever the socket
        drops."""
        while True:
            assert self.socket is not None
            try:
                async for text in self.socket:
                    await self._handle(json.loads(text))
            except ConnectionClosed:
                pass
            log.warning("subscription %s lost its connection; reconnecting", self.url)
            self.socket = await self._reconnect()

    async def _reconnect(self) -> ClientConnection:
        delay = FIRST_DELAY
        while True:
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            try:
                return await self._open()
            except (OSError, ConnectionClosed, StepFlowError) as error:
                log.info("reconnecting %s failed: %s", self.url, error)
            delay = min(delay * 2, MAX_DELAY)

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            self.last_id = frame.get("id") or self.last_id
            try:
                outcome = self.callback(frame)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("subscription callback failed on %s", frame.get("id"))
        elif kind == "missed":
            log.warning("messages after %s are no longer buffered: %s",
                        frame.get("last_event_id"), frame.get("reason"))
        else:
            log.debug("frame %s", frame)
