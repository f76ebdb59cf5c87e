"""Event-driven orders on RabbitMQ: the orders service places orders; a
route hands each to the inventory service, which reserves stock; a route
hands that to billing, which confirms the order; a route brings the
confirmation back to the orders service. Each service is a client of the
gateway here, subscribing over WebSocket and publishing over REST. Exits
non-zero when an order placed was not confirmed."""

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
ORDERS = 5


def channel_ids(gateway: StepFlowGateway) -> dict[tuple[str, str], str]:
    """Every channel's id by its document's name and its own."""
    ids = {}
    for document in gateway.list_asyncapis():
        for channel in gateway.list_channels(asyncapi_document_id=document["id"]):
            ids[(document["name"], channel["name"])] = channel["id"]
    return ids


async def run_services(gateway: StepFlowGateway, trail: list[str]) -> None:
    """Subscribes inventory and billing, each publishing its next event."""
    ids = channel_ids(gateway)

    async def inventory(message: dict) -> None:
        order = message["payload"]
        amount = sum(PRICES[i["sku"]] * i["quantity"] for i in order["items"])
        trail.append(f"inventory reserved stock for {order['orderId']}")
        await gateway.publish_message(
            ids[("Inventory service", "stockReserved")],
            {"orderId": order["orderId"], "amount": amount},
            parameters={"orderId": order["orderId"]})

    async def billing(message: dict) -> None:
        charge = message["payload"]
        trail.append(f"billing charged {charge['amount']:.2f} for {charge['orderId']}")
        await gateway.publish_message(
            ids[("Billing service", "orderConfirmed")], charge,
            parameters={"orderId": charge["orderId"]})

    await gateway.subscribe_to_channel(ids[("Inventory service", "reservationRequested")],
                                       inventory)
    await gateway.subscribe_to_channel(ids[("Billing service", "chargeRequested")], billing)


async def place_orders(gateway: StepFlowGateway) -> dict[str, dict]:
    """Places the orders and waits for their confirmations."""
    ids = channel_ids(gateway)
    trail: list[str] = []
    confirmed: dict[str, dict] = {}
    all_confirmed = asyncio.Event()
    placed = {f"order-{uuid.uuid4().hex[:6]}": n for n in range(ORDERS)}

    def on_confirmed(message: dict) -> None:
        order_id = message["payload"]["orderId"]
        if order_id in placed:
            confirmed[order_id] = message["payload"]
            trail.append(f"orders service saw {order_id} confirmed")
        if len(confirmed) == len(placed):
            all_confirmed.set()

    await run_services(gateway, trail)
    await gateway.subscribe_to_channel(ids[("Orders service", "orderConfirmed")], on_confirmed)
    for order_id, n in placed.items():
        items = [{"sku": "apple", "quantity": n + 1}, {"sku": "plum", "quantity": 2}]
        await gateway.publish_message(ids[("Orders service", "orderPlaced")],
                                      {"orderId": order_id, "items": items},
                                      parameters={"orderId": order_id})
        trail.append(f"orders service placed {order_id}")
    try:
        await asyncio.wait_for(all_confirmed.wait(), timeout=30)
    finally:
        print("\n".join(trail))
    return confirmed


def main() -> None:
    with Children() as children:
        config = (HERE / "gateway.toml").read_text().replace("@HERE@", str(HERE))
        base_url = children.gateway(config.replace("@DATA@", str(children.data)))
        with StepFlowGateway(base_url) as gateway:
            try:
                confirmed = asyncio.run(place_orders(gateway))
            except asyncio.TimeoutError:
                fail("not every order was confirmed within 30 s")
            routes = gateway.connection_status()["routes"]
    for route in routes:
        print(f"route {route['name']}: forwarded {route['forwarded']}, failed {route['failed']}")
    expected = {0.5 * (n + 1) + 2.5 for n in range(ORDERS)}
    amounts = {c["amount"] for c in confirmed.values()}
    if amounts != expected:
        fail(f"confirmed amounts {sorted(amounts)}, expected {sorted(expected)}")
    print(f"orders example: {len(confirmed)} orders placed, reserved, charged and confirmed")


if __name__ == "__main__":
    main()
