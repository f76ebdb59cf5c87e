use super::*;

#[test]
fn url_defaults_to_the_standard_port() {
    let options =
        MqttOptions::from_url("mqtt://127.0.0.1", Duration::from_secs(1)).expect("valid URL");
    assert_eq!(options.server_uri, "tcp://127.0.0.1:1883");
}

#[test]
fn url_keeps_an_explicit_port() {
    let options =
        MqttOptions::from_url("mqtt://localhost:18830", Duration::from_secs(1)).expect("valid URL");
    assert_eq!(options.server_uri, "tcp://localhost:18830");
}

#[test]
fn tls_scheme_is_refused_by_name() {
    let err =
        MqttOptions::from_url("mqtts://127.0.0.1", Duration::from_secs(1)).expect_err("no TLS");
    assert!(err.to_string().contains("mqtts"), "{err}");
}
