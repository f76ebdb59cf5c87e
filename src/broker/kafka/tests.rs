use super::*;

#[test]
fn topic_names_map_reversibly() {
    for address in [
        "device/sensor-001/data",
        "a_b/c",
        "smartylighting.streetlights.1.0",
        "caf\u{e9} {x}",
        "__/_s",
    ] {
        let topic = topic_name(address);
        assert!(
            topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{topic}"
        );
        assert_eq!(address_of(&topic).as_deref(), Some(address), "{topic}");
    }
    assert_eq!(
        topic_name("device/sensor-001/data"),
        "device_ssensor-001_sdata"
    );
}

#[test]
fn bindings_name_the_topic_its_partitions_and_the_group() {
    let binding = serde_json::json!({"topic": "telemetry", "partitions": 3});
    assert_eq!(binding_topic(Some(&binding)).as_deref(), Some("telemetry"));
    assert_eq!(binding_partitions(Some(&binding)), 3);
    assert_eq!(binding_topic(Some(&serde_json::json!({"topic": ""}))), None);
    assert_eq!(binding_partitions(None), NEW_TOPIC_PARTITIONS);

    let options = |operation: serde_json::Value| SubscribeOptions {
        operation_binding: Some(std::sync::Arc::new(operation)),
        ..Default::default()
    };
    let by_const = options(serde_json::json!({"groupId": {"type": "string", "const": "billing"}}));
    assert_eq!(group_of(&by_const, Some("gw")).as_deref(), Some("billing"));
    let by_enum = options(serde_json::json!({"groupId": {"enum": ["audit"]}}));
    assert_eq!(group_of(&by_enum, None).as_deref(), Some("audit"));
    let open = options(serde_json::json!({"groupId": {"type": "string"}}));
    assert_eq!(group_of(&open, Some("gw")).as_deref(), Some("gw"));
    assert_eq!(group_of(&SubscribeOptions::default(), None), None);
}
