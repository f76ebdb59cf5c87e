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

#[test]
fn credentials_become_librdkafka_security_settings() {
    use crate::credentials::TlsFiles;
    assert!(security_settings(Credentials::default())
        .expect("none")
        .is_empty());
    let scram = Credentials {
        username: Some("svc".into()),
        password: Some("pw".into()),
        mechanism: Some(SaslMechanism::ScramSha512),
        tls: Some(TlsFiles {
            ca_file: Some("/etc/ca.pem".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let settings = security_settings(scram).expect("settings");
    let get = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("security.protocol"), Some("SASL_SSL"));
    assert_eq!(get("sasl.mechanism"), Some("SCRAM-SHA-512"));
    assert_eq!(get("sasl.username"), Some("svc"));
    assert_eq!(get("ssl.ca.location"), Some("/etc/ca.pem"));
    let plain = Credentials {
        username: Some("svc".into()),
        ..Default::default()
    };
    let settings = security_settings(plain).expect("settings");
    assert!(settings.contains(&("security.protocol", "SASL_PLAINTEXT".into())));
    assert!(settings.contains(&("sasl.mechanism", "PLAIN".into())));
    let amqplain = Credentials {
        username: Some("svc".into()),
        mechanism: Some(SaslMechanism::Amqplain),
        ..Default::default()
    };
    assert!(security_settings(amqplain).is_err());
}
