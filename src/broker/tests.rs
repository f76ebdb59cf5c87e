use serde_json::json;

use super::mapping;

#[test]
fn each_protocol_shows_its_own_form_of_an_address() {
    let address = "device/{deviceId}/data";
    assert_eq!(
        mapping("mqtt", address),
        json!({"topic": "device/{deviceId}/data"})
    );
    assert_eq!(
        mapping("memory", address),
        json!({"topic": "device/{deviceId}/data"})
    );
    assert_eq!(
        mapping("nats", address),
        json!({"subject": "device.{deviceId}.data"})
    );
    assert_eq!(
        mapping("amqp", address),
        json!({"exchange": "amq.topic", "routing_key": "device.{deviceId}.data"})
    );
    assert_eq!(
        mapping("kafka", address),
        json!({"topic": "device_s{deviceId}_sdata"})
    );
    assert_eq!(
        mapping("ws", "/v1/marketdata/{symbol}"),
        json!({"path": "/v1/marketdata/{symbol}"})
    );
}
