//! The publish path's broker-free checks never panic, whatever body they
//! are given: arbitrary bytes, and publish requests with arbitrary
//! message data, parameters and headers for the IoT document's channel. A
//! body that parses and passes is one the gateway would send.

use proptest::prelude::*;
use serde_json::{json, Value};
use stepflow_gateway::catalog::ChannelEntry;
use stepflow_gateway::http::body;
use stepflow_gateway::publish::{self, PublishRequest, Validation};
use stepflow_gateway::registry::{compile_offline, RegisterRequest};

fn channels() -> &'static [ChannelEntry] {
    static CHANNELS: std::sync::OnceLock<Vec<ChannelEntry>> = std::sync::OnceLock::new();
    CHANNELS.get_or_init(compile)
}

fn compile() -> Vec<ChannelEntry> {
    let request = RegisterRequest {
        name: "IoT".into(),
        asyncapi_content: include_str!("fixtures/iot-device-api.yaml").into(),
        version: None,
        base_url: None,
        server_urls: Default::default(),
        files: Default::default(),
        path: None,
    };
    compile_offline(&request).expect("the IoT document compiles")
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z0-9/#+{}.\\-_ ]{0,16}".prop_map(Value::String),
        Just(json!("sensor-001")),
        Just(json!("active")),
    ];
    let keys = prop_oneof![
        Just("temperature".to_owned()),
        Just("humidity".to_owned()),
        Just("status".to_owned()),
        Just("timestamp".to_owned()),
        Just("deviceId".to_owned()),
        "[a-z]{1,8}",
    ];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check(channels: &[ChannelEntry], request: &PublishRequest) {
    for channel in channels {
        for validation in [Validation::On, Validation::Off] {
            if let Ok((_, address)) = publish::resolve(channel, request, validation) {
                // An accepted address never carries a wildcard.
                assert!(!address.contains(['#', '+']), "{address}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let channels = channels();
        if let Ok(request) = body::parse::<PublishRequest>(&bytes) {
            check(channels, &request);
        }
    }

    #[test]
    fn arbitrary_requests_never_panic(
        data in json_value(),
        parameters in json_value(),
        headers in json_value(),
    ) {
        let channels = channels();
        let body = json!({
            "channel_id": "any",
            "message_data": data,
            "parameters": parameters,
            "headers": headers,
        });
        if let Ok(request) = body::parse::<PublishRequest>(body.to_string().as_bytes()) {
            check(channels, &request);
        }
    }
}
