//! Feeds arbitrary bytes to the publish path as a request body: parsing,
//! message choice, schema validation, parameter checks and the address
//! they render must refuse or accept, never panic or hang. The channel is
//! the IoT document's, with its parameter and payload schemas. Run with
//! `cargo fuzz run publish_body` from the repository root.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stepflow_gateway::catalog::ChannelEntry;
use stepflow_gateway::http::body;
use stepflow_gateway::publish::{self, PublishRequest, Validation};
use stepflow_gateway::registry::{compile_offline, RegisterRequest};

const DOCUMENT: &str = include_str!("../../tests/fixtures/iot-device-api.yaml");

fn channels() -> &'static [ChannelEntry] {
    static CHANNELS: OnceLock<Vec<ChannelEntry>> = OnceLock::new();
    CHANNELS.get_or_init(|| {
        let request = RegisterRequest {
            name: "IoT".into(),
            asyncapi_content: DOCUMENT.into(),
            version: None,
            base_url: None,
            server_urls: Default::default(),
            files: Default::default(),
            path: None,
        };
        compile_offline(&request).expect("the IoT document compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = body::parse::<PublishRequest>(data) else {
        return;
    };
    for channel in channels() {
        for validation in [Validation::On, Validation::Off] {
            let _ = publish::resolve(channel, &request, validation);
        }
    }
});
