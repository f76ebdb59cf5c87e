use std::collections::BTreeMap;

use super::*;

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn renders_every_placeholder() {
    let template = AddressTemplate::parse("device/{deviceId}/data");
    let topic = template
        .render(&values(&[("deviceId", "sensor-001")]))
        .expect("all values given");
    assert_eq!(topic, "device/sensor-001/data");
}

#[test]
fn missing_value_names_the_parameter() {
    let template = AddressTemplate::parse("device/{deviceId}/data");
    let err = template
        .render(&BTreeMap::new())
        .expect_err("deviceId is missing");
    assert_eq!(err, AddressError::MissingParameter("deviceId".into()));
}

#[test]
fn values_cannot_change_the_topic_structure() {
    let template = AddressTemplate::parse("device/{deviceId}/data");
    for bad in ["a/b", "+", "#", "", "x*"] {
        let err = template
            .render(&values(&[("deviceId", bad)]))
            .expect_err(bad);
        assert_eq!(
            err,
            AddressError::InvalidValue {
                name: "deviceId".into()
            },
            "{bad}"
        );
    }
}

#[test]
fn unbound_parameters_become_single_level_wildcards() {
    let template = AddressTemplate::parse("a/{x}/b/pre-{y}/c");
    let filter = template
        .filter(&values(&[("x", "1")]))
        .expect("valid values");
    assert_eq!(filter.as_str(), "a/1/b/+/c");
    assert!(filter.is_wildcard());
}

#[test]
fn capture_reads_values_back_from_a_topic() {
    let template = AddressTemplate::parse("a/{x}/pre-{y}-post");
    assert_eq!(
        template.capture("a/1/pre-2-post"),
        Some(values(&[("x", "1"), ("y", "2")]))
    );
    assert_eq!(template.capture("a/1/other"), None);
    assert_eq!(template.capture("a/1/pre-2-post/extra"), None);
    assert_eq!(template.capture("a/1"), None);
}

#[test]
fn filters_match_like_mqtt() {
    let filter = TopicFilter::new("a/+/c");
    assert!(filter.matches("a/b/c"));
    assert!(!filter.matches("a/b/c/d"));
    assert!(!filter.matches("a/b"));
    let rest = TopicFilter::new("a/#");
    assert!(rest.matches("a/b/c"));
    assert!(rest.matches("a"));
    assert!(!TopicFilter::new("a/b").matches("a/c"));
}

#[test]
fn passwords_are_redacted_from_urls() {
    assert_eq!(
        redact_url("mqtt://user:secret@127.0.0.1:1883"),
        "mqtt://user:***@127.0.0.1:1883"
    );
    assert_eq!(redact_url("mqtt://127.0.0.1:1883"), "mqtt://127.0.0.1:1883");
}

#[test]
fn wildcard_and_oversized_addresses_cannot_be_published_to() {
    let wildcard = AddressTemplate::parse("sensors/+/data");
    assert!(matches!(
        wildcard.render(&BTreeMap::new()),
        Err(AddressError::Wildcard(_))
    ));
    let template = AddressTemplate::parse("m/{id}");
    let long = "y".repeat(70_000);
    let err = template
        .render(&values(&[("id", &long)]))
        .expect_err("too long");
    assert!(
        matches!(err, AddressError::TooLong { bytes: 70_002 }),
        "{err:?}"
    );
}

#[test]
fn dotted_forms_map_levels_and_wildcards() {
    assert_eq!(dotted("device/+/data", ">"), "device.*.data");
    assert_eq!(dotted("device/#", ">"), "device.>");
    assert_eq!(dotted("device/#", "#"), "device.#");
    assert_eq!(dotted("a/b.c/d", ">"), "a.b.c.d");
}

#[test]
fn dotted_topics_read_back_through_their_filter() {
    let filter = TopicFilter::new("user.events/+/data");
    assert_eq!(
        undotted(&filter, "user.events.42.data"),
        Some("user.events/42/data".into())
    );
    assert_eq!(undotted(&filter, "user.events.42.other"), None);
    assert_eq!(undotted(&filter, "user.events.42.data.more"), None);
    assert_eq!(
        undotted(&TopicFilter::new("a/#"), "a.b.c"),
        Some("a/b/c".into())
    );
    assert_eq!(
        undotted(&TopicFilter::new("a/b"), "a.b"),
        Some("a/b".into())
    );
}

#[test]
fn dotted_protocols_wildcard_only_the_parameter_token() {
    let template = AddressTemplate::parse("accounts.v1.auth.idents.{name}.get");
    let filter = template
        .filter_in(&BTreeMap::new(), Separators::SlashAndDot)
        .expect("valid");
    assert_eq!(filter.as_str(), "accounts.v1.auth.idents.+.get");
    assert_eq!(
        dotted(filter.as_str(), ">"),
        "accounts.v1.auth.idents.*.get"
    );
    assert!(filter.matches("accounts.v1.auth.idents.bob.get"));
    assert!(!filter.matches("accounts.v1.auth.idents.bob.put"));
    assert_eq!(
        undotted(&filter, "accounts.v1.auth.idents.bob.get"),
        Some("accounts.v1.auth.idents.bob.get".into())
    );
    let slash = template.filter(&BTreeMap::new()).expect("valid");
    assert_eq!(slash.as_str(), "+", "MQTT wildcards whole levels");
}
