//! Feeds arbitrary bytes to the AsyncAPI loader, as text: it must refuse or
//! accept, never panic or hang. Run with `cargo fuzz run load_document`
//! from the repository root (needs cargo-fuzz and a nightly toolchain).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = stepflow_gateway::asyncapi::load(text);
    }
});
