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
