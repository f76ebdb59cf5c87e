"""The plain calls: registering documents and reading them back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers import MEMORY_IOT_YAML, register_memory_iot, unique_name
from stepflow_gateway import StepFlowError, StepFlowGateway

CHAT_3_0 = {
    "asyncapi": "3.0.0",
    "info": {"title": "Chat", "version": "1"},
    "channels": {
        "room": {
            "address": "rooms/{roomId}",
            "messages": {"said": {"payload": {"type": "object",
                                              "properties": {"text": {"type": "string"}}}}},
        }
    },
}


@pytest.fixture
def gateway(gateway_url: str) -> Iterator[StepFlowGateway]:
    with StepFlowGateway(gateway_url) as client:
        yield client


def test_register_returns_the_document_with_its_channels(gateway: StepFlowGateway) -> None:
    name = unique_name("IoT")
    document = gateway.register_asyncapi(name, MEMORY_IOT_YAML, version="build-7")
    assert document["name"] == name
    assert document["version"] == "build-7"
    assert document["title"] == "IoT Device API"
    [channel] = document["channels"]
    assert channel["id"]
    assert channel["address"] == "device/{deviceId}/data"
    assert [message["name"] for message in channel["messages"]] == ["DeviceData"]
    assert [broker["protocol"] for broker in document["brokers"]] == ["memory"]
    assert [warning["rule"] for warning in document["warnings"]] == ["channel-parameters"]


def test_register_takes_a_dict(gateway: StepFlowGateway) -> None:
    document = gateway.register_asyncapi(unique_name("Chat"), CHAT_3_0)
    assert document["asyncapi_version"] == "3.0.0"
    assert [channel["address"] for channel in document["channels"]] == ["rooms/{roomId}"]


def test_registered_documents_are_listed(gateway: StepFlowGateway) -> None:
    document, _ = register_memory_iot(gateway)
    listed = {entry["id"]: entry["name"] for entry in gateway.list_asyncapis()}
    assert listed[document["id"]] == document["name"]


def test_channels_are_listed_by_document(gateway: StepFlowGateway) -> None:
    iot, iot_channel = register_memory_iot(gateway)
    chat = gateway.register_asyncapi(unique_name("Chat"), CHAT_3_0)
    channels = gateway.list_channels(asyncapi_document_id=iot["id"])
    assert [channel["id"] for channel in channels] == [iot_channel]
    every = {channel["id"] for channel in gateway.list_channels()}
    assert {iot_channel, chat["channels"][0]["id"]} <= every


def test_message_schema_is_the_resolved_payload(gateway: StepFlowGateway) -> None:
    document, _ = register_memory_iot(gateway)
    message_id = document["channels"][0]["messages"][0]["id"]
    schema = gateway.get_message_schema(message_id)
    assert schema["name"] == "DeviceData"
    assert schema["payload"]["properties"] == {"temperature": {"type": "number"},
                                               "humidity": {"type": "number"}}


def test_a_taken_name_is_refused_with_409(gateway: StepFlowGateway) -> None:
    document, _ = register_memory_iot(gateway)
    with pytest.raises(StepFlowError) as refused:
        gateway.register_asyncapi(document["name"], MEMORY_IOT_YAML)
    assert refused.value.status == 409


def test_an_invalid_document_names_each_problem(gateway: StepFlowGateway) -> None:
    broken = MEMORY_IOT_YAML.replace("version: 1.0.0", "version: 1")
    with pytest.raises(StepFlowError) as refused:
        gateway.register_asyncapi(unique_name("Broken"), broken)
    error = refused.value
    assert error.status == 400
    assert error.type == "urn:stepflow:problem:invalid-asyncapi"
    failed = {item["pointer"] for item in error.errors if item["severity"] == "error"}
    assert failed == {"/info/version"}
    assert str(error).startswith("400 not a valid AsyncAPI document")


def test_an_unknown_message_is_404(gateway: StepFlowGateway) -> None:
    with pytest.raises(StepFlowError) as refused:
        gateway.get_message_schema("no-such-message")
    assert refused.value.status == 404
    assert refused.value.errors == []
