"""IoT device data: simulated devices publish readings over MQTT, the
gateway validates them and routes them into Kafka, and a dashboard watches
the Kafka channel over the gateway's WebSocket. One invalid reading is
refused by the route and shows in its counts. Exits non-zero when a valid
reading did not reach the dashboard or the invalid one was not refused."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from stepflow_gateway import StepFlowGateway  # noqa: E402
from support import Children, fail  # noqa: E402

DEVICES = 5
READINGS = 20


def publish_readings(run: str) -> int:
    """Each device publishes its readings at QoS 1, then one bad reading;
    answers how many valid readings Mosquitto acknowledged."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"devices-{run}")
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    sent = 0
    for seq in range(READINGS):
        for device in range(DEVICES):
            reading = {"temperature": 20 + device + seq / 10, "humidity": 40 + seq, "seq": seq}
            topic = f"device/{run}-{device}/telemetry"
            client.publish(topic, json.dumps(reading), qos=1).wait_for_publish(10)
            sent += 1
    bad = {"temperature": "hot", "humidity": 40, "seq": READINGS}
    client.publish(f"device/{run}-0/telemetry", json.dumps(bad), qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    return sent


async def watch(gateway: StepFlowGateway, run: str) -> None:
    """Subscribes the dashboard to Kafka, drives the devices and checks
    what arrived and what was refused."""
    channels = {c["name"]: c["id"] for c in gateway.list_channels()}
    seen: list[dict] = []
    got_all = asyncio.Event()
    expected = DEVICES * READINGS

    def dashboard(message: dict) -> None:
        if message["payload"].get("temperature") is not None:
            seen.append(message["payload"])
        if len(seen) >= expected:
            got_all.set()

    await gateway.subscribe_to_channel(channels["iot.telemetry"], dashboard)
    sent = await asyncio.to_thread(publish_readings, run)
    print(f"devices: {sent} valid readings and 1 invalid one acknowledged by Mosquitto")
    try:
        await asyncio.wait_for(got_all.wait(), timeout=60)
    except asyncio.TimeoutError:
        fail(f"the dashboard saw {len(seen)} of {expected} readings")
    route = await wait_for_refusal(gateway)
    print(f"dashboard: {len(seen)} readings from Kafka over the WebSocket")
    print(f"route: forwarded {route['forwarded']}, refused {route['failed']}")
    if len(seen) != expected:
        fail(f"the dashboard saw {len(seen)} readings, {expected} expected")


async def wait_for_refusal(gateway: StepFlowGateway) -> dict:
    """The route's status once it has refused the invalid reading."""
    for _ in range(100):
        route = gateway.connection_status()["routes"][0]
        if route["failed"].get("validation", 0) >= 1:
            return route
        await asyncio.sleep(0.1)
    fail(f"the invalid reading was not refused: {route}")
    raise AssertionError


def main() -> None:
    run = uuid.uuid4().hex[:8]
    with Children() as children:
        kafka = children.kafka()
        config = (HERE / "gateway.toml").read_text()
        config = config.replace("@KAFKA_URL@", kafka).replace("@HERE@", str(HERE))
        base_url = children.gateway(config.replace("@DATA@", str(children.data)))
        print(f"gateway at {base_url}, Kafka at {kafka}")
        with StepFlowGateway(base_url) as gateway:
            asyncio.run(watch(gateway, run))
            stats = gateway.statistics()
            print("statistics:", json.dumps(stats.get("totals", stats))[:400])
    print("IoT example: every valid reading reached the dashboard; the invalid one was refused")


if __name__ == "__main__":
    main()
