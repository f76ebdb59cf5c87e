use serde_json::json;

use super::mapping;

#[test]
fn each_protocol_shows_its_own_form_of_an_address() {
    let address = "device/{deviceId}/data";
    assert_eq!(
        mapping("mqtt", address, None),
        json!({"topic": "device/{deviceId}/data"})
    );
    assert_eq!(
        mapping("memory", address, None),
        json!({"topic": "device/{deviceId}/data"})
    );
    assert_eq!(
        mapping("nats", address, None),
        json!({"subject": "device.{deviceId}.data"})
    );
    assert_eq!(
        mapping("amqp", address, None),
        json!({"exchange": "amq.topic", "exchange_type": "topic", "routing_key": "device.{deviceId}.data"})
    );
    assert_eq!(
        mapping("kafka", address, None),
        json!({"topic": "device_s{deviceId}_sdata"})
    );
    assert_eq!(
        mapping("ws", "/v1/marketdata/{symbol}", None),
        json!({"path": "/v1/marketdata/{symbol}"})
    );
}

#[test]
fn an_amqp_exchange_binding_shows_in_the_mapping() {
    let binding = json!({"exchange": {"name": "orders", "type": "direct"}});
    let shown = mapping("amqp", "orders/{id}", Some(&binding));
    assert_eq!(shown["exchange"], "orders");
    assert_eq!(shown["exchange_type"], "direct");
}
