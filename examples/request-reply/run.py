"""Microservice request and reply over NATS, as the document's 3.0
`reply` describes it: the requester subscribes to its reply address,
sends each request with a fresh correlation id and waits for the reply
that carries it. The price service answers known products and stays
silent for an unknown one, whose request times out with an error that
says what was asked and where the reply was awaited. Exits non-zero when
a reply is missing, mismatched, or the silent request does not time out."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from stepflow_gateway import StepFlowGateway  # noqa: E402
from support import Children, fail  # noqa: E402

PRICES = {"apple": 0.5, "pear": 0.75, "plum": 1.25}


class Requester:
    """Sends requests and hands each reply to the request it answers."""

    def __init__(self, gateway: StepFlowGateway, requests: str, replies: str) -> None:
        self.gateway = gateway
        self.requests = requests
        self.replies = replies
        self.name = f"requester-{uuid.uuid4().hex[:6]}"
        self.waiting: dict[str, asyncio.Future[dict]] = {}

    async def start(self) -> None:
        """Subscribes to this requester's reply address."""
        await self.gateway.subscribe_to_channel(
            self.replies, self.on_reply, parameters={"requester": self.name})

    def on_reply(self, message: dict) -> None:
        waiting = self.waiting.pop(message["payload"]["correlationId"], None)
        if waiting is not None and not waiting.done():
            waiting.set_result(message["payload"])

    async def request(self, sku: str, timeout: float) -> dict:
        """The reply to a price request for `sku`; TimeoutError naming the
        request when none comes within `timeout` seconds."""
        correlation_id = uuid.uuid4().hex
        self.waiting[correlation_id] = asyncio.get_running_loop().create_future()
        request = {"correlationId": correlation_id, "replyTo": self.name, "sku": sku}
        await self.gateway.publish_message(self.requests, request)
        try:
            return await asyncio.wait_for(self.waiting[correlation_id], timeout)
        except asyncio.TimeoutError:
            self.waiting.pop(correlation_id, None)
            raise TimeoutError(
                f"no reply to price request {correlation_id} for `{sku}` on "
                f"prices.reply.{self.name} within {timeout:.0f} s") from None


async def exchange(gateway: StepFlowGateway) -> None:
    """Runs the price service and a requester, and checks the replies."""
    ids = {c["name"]: c["id"] for c in gateway.list_channels()}

    async def price_service(message: dict) -> None:
        request = message["payload"]
        if request["sku"] not in PRICES:
            return
        reply = {"correlationId": request["correlationId"], "sku": request["sku"],
                 "price": PRICES[request["sku"]]}
        await gateway.publish_message(ids["priceReplies"], reply,
                                      parameters={"requester": request["replyTo"]})

    await gateway.subscribe_to_channel(ids["priceRequests"], price_service)
    requester = Requester(gateway, ids["priceRequests"], ids["priceReplies"])
    await requester.start()
    replies = await asyncio.gather(*(requester.request(sku, 5) for sku in PRICES))
    for sku, reply in zip(PRICES, replies):
        print(f"asked for {sku}: {reply['price']} (correlation id {reply['correlationId']})")
        if reply["sku"] != sku or reply["price"] != PRICES[sku]:
            fail(f"the reply to {sku} was {reply}")
    try:
        await requester.request("durian", 2)
    except TimeoutError as error:
        print(f"asked for durian: {error}")
    else:
        fail("the request for an unknown product got a reply")


def main() -> None:
    with Children() as children:
        config = (HERE / "gateway.toml").read_text().replace("@HERE@", str(HERE))
        base_url = children.gateway(config.replace("@DATA@", str(children.data)))
        with StepFlowGateway(base_url) as gateway:
            asyncio.run(exchange(gateway))
    print("request-reply example: every request got its own reply; the silent one timed out")


if __name__ == "__main__":
    main()
