"""StepFlowGateway: the gateway's HTTP API under the names its users know.
Management calls are plain; publishing and subscribing are awaitable."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx

from .errors import StepFlowError
from .subscription import Callback, Subscription


class StepFlowGateway:
    """A client of the gateway at `base_url` (`http://127.0.0.1:8000`).
    `token` (a JWT) or `api_key` is sent as `Authorization: Bearer`."""

    def __init__(self, base_url: str, api_key: str | None = None, token: str | None = None,
                 timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        credential = token or api_key
        self.headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout)
        self._async: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None
        self._subscriptions: dict[str, Subscription] = {}

    def __enter__(self) -> StepFlowGateway:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    async def __aenter__(self) -> StepFlowGateway:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    def close(self) -> None:
        """Closes the plain HTTP connections."""
        self._http.close()

    async def aclose(self) -> None:
        """Ends every subscription and closes every connection."""
        for subscription_id in list(self._subscriptions):
            await self.unsubscribe(subscription_id)
        if self._async is not None:
            await self._async[1].aclose()
            self._async = None
        self.close()

    def register_asyncapi(self, name: str, asyncapi_content: str | dict[str, Any],
                          version: str | None = None,
                          base_url: str | None = None) -> dict[str, Any]:
        """Registers a document (JSON or YAML text, or a dict); the gateway's
        answer, with the document's `id`, its `channels` and `brokers`."""
        body: dict[str, Any] = {"name": name, "asyncapi_content": asyncapi_content}
        if version is not None:
            body["version"] = version
        if base_url is not None:
            body["base_url"] = base_url
        return self._object("POST", "/asyncapis/register", json=body)

    def list_asyncapis(self) -> list[dict[str, Any]]:
        """Every registered document."""
        return _listed(self._call("GET", "/asyncapis"), "documents")

    def list_channels(self, asyncapi_document_id: str | None = None) -> list[dict[str, Any]]:
        """Every channel, or those of one document."""
        params = {"asyncapi_document_id": asyncapi_document_id} if asyncapi_document_id else None
        return _listed(self._call("GET", "/channels", params=params), "channels")

    def get_message_schema(self, message_id: str) -> dict[str, Any]:
        """A message's resolved payload and headers schemas."""
        return self._object("GET", f"/messages/{message_id}/schema")

    def statistics(self, asyncapi_document_id: str | None = None,
                   channel_id: str | None = None) -> dict[str, Any]:
        """Message counts, throughput and latencies per channel and broker."""
        params = {k: v for k, v in [("asyncapi_document_id", asyncapi_document_id),
                                    ("channel_id", channel_id)] if v}
        return self._object("GET", "/messages/statistics", params=params)

    def connection_status(self) -> dict[str, Any]:
        """Every broker connection, static route and open session count."""
        return self._object("GET", "/connections/status")

    async def publish_message(self, channel_id: str, message_data: Any,
                              parameters: dict[str, str] | None = None,
                              headers: dict[str, str] | None = None,
                              message_id: str | None = None) -> dict[str, Any]:
        """Publishes on a channel; answers once the broker has the message,
        with the delivery's record (broker, topic, call-log id)."""
        body: dict[str, Any] = {"channel_id": channel_id, "message_data": message_data}
        for key, value in [("parameters", parameters), ("headers", headers),
                           ("message_id", message_id)]:
            if value is not None:
                body[key] = value
        reply = await self._async_client().post("/messages/publish", json=body)
        answer: dict[str, Any] = _answer(reply)
        return answer

    async def subscribe_to_channel(self, channel_id: str, callback: Callback,
                                   parameters: dict[str, str] | None = None) -> str:
        """Subscribes over WebSocket; `callback` (plain or async) gets each
        message frame. Returns once subscribed, with the subscription's id.
        A dropped connection is reopened and resumes where it left off."""
        url = self.base_url.replace("http", "ws", 1) + f"/ws/{channel_id}"
        if parameters:
            url += "?" + urlencode(parameters)
        subscription = Subscription(url, self.headers, callback)
        await subscription.start()
        subscription_id = uuid.uuid4().hex
        self._subscriptions[subscription_id] = subscription
        return subscription_id

    async def unsubscribe(self, subscription_id: str) -> None:
        """Ends a subscription; KeyError for an id this client does not know."""
        await self._subscriptions.pop(subscription_id).stop()

    def _call(self, method: str, path: str, **options: Any) -> Any:
        return _answer(self._http.request(method, path, **options))

    def _object(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        """A call whose answer is one JSON object."""
        answer: dict[str, Any] = self._call(method, path, **options)
        return answer

    def _async_client(self) -> httpx.AsyncClient:
        """The async HTTP client of the running event loop."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            client = httpx.AsyncClient(base_url=self.base_url, headers=self.headers,
                                       timeout=self.timeout)
            self._async = (loop, client)
        return self._async[1]


def _answer(reply: httpx.Response) -> Any:
    """The reply's JSON body; StepFlowError for any status but 2xx."""
    if not reply.is_success:
        raise StepFlowError.from_body(reply.status_code, reply.content)
    if reply.status_code == 204 or not reply.content:
        return {}
    return json.loads(reply.content)


def _listed(body: Any, key: str) -> list[dict[str, Any]]:
    """A listing's items, whether the gateway sent a list or wrapped one."""
    if isinstance(body, list):
        return body
    return list(body.get(key, []))
