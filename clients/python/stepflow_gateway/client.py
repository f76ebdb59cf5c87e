"""StepFlowGateway: the gateway's HTTP and WebSocket API as Python methods.

Management calls (registering and listing documents, schemas, statistics,
connection status) are plain, blocking calls: they suit scripts and setup
code. Publishing and subscribing are awaitable, as they belong in the event
loop of an application that handles messages.
"""

from __future__ import annotations

import asyncio
import uuid
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx

from .errors import StepFlowError
from .subscription import MessageCallback, Subscription


class StepFlowGateway:
    """A client of one gateway.

    `base_url` is where the gateway listens (`http://127.0.0.1:8000`, or
    `https://...` behind TLS). When the gateway has authentication on, give
    an API key (`api_key`) or a JWT (`token`); either is sent as
    `Authorization: Bearer`, the token when both are given. `timeout`
    bounds each HTTP call and each WebSocket handshake, in seconds.

    Use it as a context manager (`with` or `async with`), or call `close()`
    / `aclose()`; only `aclose()` also ends open subscriptions.
    """

    def __init__(self, base_url: str, api_key: str | None = None, token: str | None = None,
                 timeout: float = 10.0) -> None:
        """Prepares the client; no connection is made until a call needs it."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        credential = token or api_key
        self._headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout)
        self._async_http: httpx.AsyncClient | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._subscriptions: dict[str, Subscription] = {}

    def __enter__(self) -> StepFlowGateway:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> StepFlowGateway:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    def close(self) -> None:
        """Closes the connections of the plain (blocking) calls."""
        self._http.close()

    async def aclose(self) -> None:
        """Ends every subscription (all at once, as each close handshake
        takes a round trip or more), then closes every connection."""
        subscriptions = list(self._subscriptions.values())
        self._subscriptions.clear()
        await asyncio.gather(*(subscription.stop() for subscription in subscriptions))
        if self._async_http is not None:
            await self._async_http.aclose()
            self._async_http = None
        self.close()

    def register_asyncapi(self, name: str, asyncapi_content: str | dict[str, Any],
                          version: str | None = None,
                          base_url: str | None = None) -> dict[str, Any]:
        """Registers an AsyncAPI document under a unique `name`.

        `asyncapi_content` is the document as JSON or YAML text, or as a
        dict. `version` is a label of your own; `base_url` (such as
        `mqtt://127.0.0.1:1883`) replaces every server URL of the document.
        Returns the stored document: its `id`, its `channels` (each with an
        `id` to publish and subscribe with), `brokers` and `warnings`."""
        body = _without_none({"name": name, "asyncapi_content": asyncapi_content,
                              "version": version, "base_url": base_url})
        return _object(self._request("POST", "/asyncapis/register", json=body))

    def list_asyncapis(self) -> list[dict[str, Any]]:
        """Every registered document, with its channels and brokers."""
        return _items(self._request("GET", "/asyncapis"), "documents")

    def list_channels(self, asyncapi_document_id: str | None = None) -> list[dict[str, Any]]:
        """Every channel, or only those of one document: address,
        parameters, messages (with their ids), broker and topic mapping."""
        params = _without_none({"asyncapi_document_id": asyncapi_document_id})
        return _items(self._request("GET", "/channels", params=params), "channels")

    def get_message_schema(self, message_id: str) -> dict[str, Any]:
        """A message's resolved `payload` and `headers` JSON Schemas."""
        return _object(self._request("GET", f"/messages/{_segment(message_id)}/schema"))

    def statistics(self, asyncapi_document_id: str | None = None,
                   channel_id: str | None = None) -> dict[str, Any]:
        """Counts, throughput and latencies since the gateway started,
        under `channels` and `brokers` keyed by id (admin only when
        authentication is on)."""
        params = _without_none({"asyncapi_document_id": asyncapi_document_id,
                                "channel_id": channel_id})
        return _object(self._request("GET", "/messages/statistics", params=params))

    def connection_status(self) -> dict[str, Any]:
        """The state of every broker connection (`brokers`), static route
        (`routes`) and the open subscriber `sessions`."""
        return _object(self._request("GET", "/connections/status"))

    async def publish_message(self, channel_id: str, message_data: Any,
                              parameters: dict[str, str] | None = None,
                              headers: dict[str, Any] | None = None,
                              message_id: str | None = None) -> dict[str, Any]:
        """Publishes `message_data` on a channel once it matches its schema.

        `parameters` fill the channel address's placeholders (else they are
        taken from the payload's top-level fields); `message_id` picks one
        message of a channel that carries several. Returns once the broker
        has the message, with the delivery: `status`, `address`,
        `protocol`, `broker_id`, `call_log_id`, `latency_ms`, ..."""
        body = _without_none({"channel_id": channel_id, "message_data": message_data,
                              "parameters": parameters, "headers": headers,
                              "message_id": message_id})
        reply = await self._async_client().post("/messages/publish", json=body)
        return _object(_json(reply))

    async def subscribe_to_channel(self, channel_id: str, callback: MessageCallback,
                                   parameters: dict[str, str] | None = None) -> str:
        """Subscribes to a channel over a WebSocket.

        `parameters` fix channel parameters (`{"deviceId": "d1"}` receives
        only that device's messages); the others match any value. Returns
        once the gateway has confirmed the subscription, with an id for
        `unsubscribe`. From then on `callback` gets every message frame, in
        order; a dropped connection is reopened and resumes after the last
        message handed on. Raises StepFlowError when the gateway refuses."""
        subscription = Subscription(self._websocket_url(channel_id, parameters),
                                    self._headers, callback, self.timeout)
        await subscription.start()
        subscription_id = uuid.uuid4().hex
        self._subscriptions[subscription_id] = subscription
        return subscription_id

    async def unsubscribe(self, subscription_id: str) -> None:
        """Ends a subscription and closes its WebSocket; KeyError for an id
        this client did not hand out or has already ended."""
        await self._subscriptions.pop(subscription_id).stop()

    def _request(self, method: str, path: str, **options: Any) -> Any:
        """A blocking call; its decoded JSON body."""
        return _json(self._http.request(method, path, **options))

    def _async_client(self) -> httpx.AsyncClient:
        """The awaitable HTTP client of the running event loop, made anew
        when the loop changed (each `asyncio.run` has its own loop)."""
        loop = asyncio.get_running_loop()
        if self._async_http is None or self._async_loop is not loop:
            self._async_http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers,
                                                 timeout=self.timeout)
            self._async_loop = loop
        return self._async_http

    def _websocket_url(self, channel_id: str, parameters: dict[str, str] | None) -> str:
        """`ws(s)://<host>/ws/<channel>?<parameter>=<value>...` of the
        gateway at `base_url`, keeping any path prefix it has."""
        parts = urlsplit(self.base_url)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        path = f"{parts.path}/ws/{_segment(channel_id)}"
        return urlunsplit((scheme, parts.netloc, path, urlencode(parameters or {}), ""))


def _json(reply: httpx.Response) -> Any:
    """The reply's decoded JSON body; StepFlowError for any status but 2xx."""
    if not reply.is_success:
        raise StepFlowError.from_reply(reply.status_code, reply.content)
    return reply.json() if reply.content else None


def _object(body: Any) -> dict[str, Any]:
    """`body`, which the gateway documents as a JSON object."""
    if not isinstance(body, dict):
        raise TypeError(f"expected a JSON object from the gateway, got {type(body).__name__}")
    return body


def _items(body: Any, key: str) -> list[dict[str, Any]]:
    """The items of a listing, which the gateway wraps as `{key: [...]}`;
    a bare list is taken as it is."""
    items = body.get(key) if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise TypeError(f"expected a list of {key} from the gateway, got {type(body).__name__}")
    return items


def _without_none(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` without those left unset, which the gateway must not see."""
    return {name: value for name, value in fields.items() if value is not None}


def _segment(value: str) -> str:
    """`value` escaped as one URL path segment."""
    return quote(value, safe="")
