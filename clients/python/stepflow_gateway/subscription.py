"""WebSocket subscriptions that outlive dropped connections.

A subscription reads the gateway's frames in a background task and hands
each message to a callback. When the connection drops it reconnects with a
capped, jittered exponential backoff and sends the id of the last message
it handed on as `Last-Event-ID`, so the gateway replays what was published
meanwhile (as far as it still buffers it) before anything new.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from .errors import StepFlowError

log = logging.getLogger(__name__)

MessageCallback = Callable[[dict[str, Any]], Awaitable[None] | None]
"""Receives each `message` frame as a dict (`id`, `payload`, `parameters`,
`address`, `headers`, `channel_id`, `message`, `received_at`). A plain
function or a coroutine function; an awaitable it returns is awaited
before the next message is handed on, so messages arrive in order."""

FIRST_DELAY = 0.1
"""Seconds before the first reconnect attempt (then doubling)."""
MAX_DELAY = 5.0
"""Longest wait between reconnect attempts, in seconds."""

RETRIED_STATUSES = frozenset({408, 429})
"""Client-error statuses worth retrying; any other 4xx (unknown channel,
revoked credentials, access denied) will not heal by waiting."""


class Subscription:
    """One WebSocket subscription: its current connection, the task that
    reads it, and the id of the last message handed to the callback."""

    def __init__(self, url: str, headers: dict[str, str], callback: MessageCallback,
                 timeout: float) -> None:
        """Prepares a subscription to `url` (a `ws(s)://.../ws/<channel>`
        URL with its parameters); nothing is opened until `start`."""
        self.url = url
        self.last_event_id: str | None = None
        self._headers = headers
        self._callback = callback
        self._timeout = timeout
        self._socket: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Opens the connection and returns once the gateway has confirmed
        the subscription; from then on messages reach the callback.

        Raises StepFlowError when the gateway refuses the subscription."""
        self._socket = await self._connect()
        self._task = asyncio.create_task(self._read_forever(), name=f"subscription {self.url}")

    async def stop(self) -> None:
        """Ends the subscription for good: no reconnect, no more callbacks.
        Safe to call from inside the callback itself."""
        self._stopping = True
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])
        if self._socket is not None:
            await self._socket.close()

    async def _read_forever(self) -> None:
        """Hands on messages until stopped, reconnecting after every drop;
        ends early only if the gateway refuses a reconnect for good."""
        while True:
            await self._read_until_dropped()
            if self._stopping:
                return
            log.warning("subscription %s lost its connection; reconnecting", self.url)
            socket = await self._reconnect()
            if socket is None:
                return
            self._socket = socket

    async def _read_until_dropped(self) -> None:
        """Dispatches the frames of the current connection until it ends,
        or until the callback itself has ended the subscription."""
        assert self._socket is not None
        try:
            async for text in self._socket:
                if self._stopping:
                    return
                await self._dispatch(_decode(text))
        except ConnectionClosed:
            pass

    async def _reconnect(self) -> ClientConnection | None:
        """A new, confirmed connection, after as many attempts as it takes;
        None when the gateway answers with a refusal that retrying cannot
        change (logged as an error)."""
        delay = FIRST_DELAY
        while True:
            await asyncio.sleep(random.uniform(delay / 2, delay))
            try:
                return await self._connect()
            except StepFlowError as refused:
                if 400 <= refused.status < 500 and refused.status not in RETRIED_STATUSES:
                    log.error("subscription %s refused, giving up: %s", self.url, refused)
                    return None
                log.info("reconnecting %s failed: %s", self.url, refused)
            except (OSError, asyncio.TimeoutError, WebSocketException) as failure:
                log.info("reconnecting %s failed: %r", self.url, failure)
            delay = min(delay * 2, MAX_DELAY)

    async def _connect(self) -> ClientConnection:
        """Opens a connection (resuming after the last message when there
        was one) and waits for the gateway's `subscribed` frame."""
        headers = dict(self._headers)
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        try:
            socket = await connect(self.url, additional_headers=headers,
                                   open_timeout=self._timeout, max_size=None)
        except InvalidStatus as refused:
            raise StepFlowError.from_reply(refused.response.status_code,
                                           refused.response.body or b"") from None
        try:
            await self._await_subscribed(socket)
        except BaseException:
            await socket.close()
            raise
        return socket

    async def _await_subscribed(self, socket: ClientConnection) -> None:
        """Reads the first frame, which must confirm the subscription.

        The gateway closes the socket instead when the broker refuses the
        subscription; that, or any other first frame, is a StepFlowError
        with status 502, as the gateway could not deliver what it accepted."""
        try:
            frame = _decode(await asyncio.wait_for(socket.recv(), self._timeout))
        except ConnectionClosed as closed:
            raise StepFlowError(502, detail=f"the gateway closed the subscription before "
                                            f"confirming it: {closed}") from None
        if frame.get("type") == "error" and isinstance(frame.get("problem"), dict):
            problem: dict[str, Any] = frame["problem"]
            raise StepFlowError(int(problem.get("status", 502)), problem)
        if frame.get("type") != "subscribed":
            raise StepFlowError(502, detail=f"expected a `subscribed` frame, got {frame}")

    async def _dispatch(self, frame: dict[str, Any]) -> None:
        """Passes a message frame to the callback and logs the others."""
        kind = frame.get("type")
        if kind == "message":
            await self._deliver(frame)
        elif kind == "missed":
            log.warning("subscription %s missed messages after %s: %s", self.url,
                        frame.get("last_event_id"), frame.get("reason"))
        elif kind == "error":
            log.error("subscription %s got an error frame: %s", self.url, frame.get("problem"))
        else:
            log.debug("subscription %s got a %s frame: %s", self.url, kind, frame)

    async def _deliver(self, frame: dict[str, Any]) -> None:
        """Runs the callback on one message. Its id becomes the resume
        point first: a message the callback fails on is not replayed, and
        the failure is logged without ending the subscription."""
        self.last_event_id = frame.get("id") or self.last_event_id
        try:
            outcome = self._callback(frame)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            log.exception("the callback of subscription %s failed on message %s",
                          self.url, frame.get("id"))


def _decode(text: str | bytes) -> dict[str, Any]:
    """A frame's JSON object; `{}` (and a log line) for anything else, so
    that one malformed frame does not end the subscription."""
    try:
        frame = json.loads(text)
    except ValueError:
        frame = None
    if not isinstance(frame, dict):
        log.warning("ignoring a frame that is not a JSON object: %.200r", text)
        return {}
    return frame
