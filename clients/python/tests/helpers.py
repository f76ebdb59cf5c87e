"""Documents and waiting helpers the tests share."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from stepflow_gateway import StepFlowGateway

T = TypeVar("T")

WAIT = 10.0
"""Seconds any single expected event may take before a test fails."""

IOT_YAML = """\
asyncapi: 2.5.0
info: {title: IoT Device API, version: 1.0.0}
servers:
  production: {url: mqtt://broker.example.com, protocol: mqtt}
channels:
  device/{deviceId}/data:
    publish:
      message: {$ref: '#/components/messages/DeviceData'}
components:
  messages:
    DeviceData:
      payload:
        type: object
        properties:
          temperature: {type: number}
          humidity: {type: number}
"""

MEMORY_IOT_YAML = IOT_YAML.replace(
    "servers:\n  production: {url: mqtt://broker.example.com, protocol: mqtt}\n", "")
"""The IoT document without servers: the gateway puts it on its in-memory
broker, so no external broker is needed."""


def unique_name(prefix: str) -> str:
    """A document name no other test uses (names are unique)."""
    return f"{prefix} {uuid.uuid4().hex}"


def register_memory_iot(gateway: StepFlowGateway) -> tuple[dict[str, Any], str]:
    """A fresh in-memory IoT document and the id of its one channel."""
    document = gateway.register_asyncapi(unique_name("IoT"), MEMORY_IOT_YAML)
    return document, document["channels"][0]["id"]


async def next_item(queue: asyncio.Queue[T]) -> T:
    """The queue's next item, failing the test after WAIT seconds."""
    return await asyncio.wait_for(queue.get(), WAIT)


async def wait_until(probe: Callable[[], T | None], what: str) -> T:
    """Polls `probe` until it returns something other than None, failing
    after WAIT seconds with `what` in the message. For state the gateway
    updates asynchronously, such as statistics and broker connections."""
    deadline = time.monotonic() + WAIT
    while (value := probe()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value
