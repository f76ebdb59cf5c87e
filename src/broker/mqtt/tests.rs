use super::*;

fn options(url: &str, credentials: Option<Credentials>) -> MqttOptions {
    MqttOptions::from_url(url, credentials, Duration::from_secs(1)).expect("valid URL")
}

#[test]
fn url_defaults_to_the_standard_port() {
    assert_eq!(
        options("mqtt://127.0.0.1", None).server_uri,
        "tcp://127.0.0.1:1883"
    );
}

#[test]
fn url_keeps_an_explicit_port() {
    let options = options("mqtt://localhost:18830", None);
    assert_eq!(options.server_uri, "tcp://localhost:18830");
}

#[test]
fn tls_comes_from_the_scheme_or_the_config() {
    assert_eq!(
        options("mqtts://127.0.0.1", None).server_uri,
        "ssl://127.0.0.1:8883"
    );
    let configured = Credentials {
        tls: Some(TlsFiles::default()),
        username: Some("svc".into()),
        password: Some("pw".into()),
        ..Default::default()
    };
    let options = options("mqtt://u:url@127.0.0.1:9000", Some(configured));
    assert_eq!(options.server_uri, "ssl://127.0.0.1:9000");
    assert_eq!(options.credentials, Some(("svc".into(), "pw".into())));
}

#[test]
fn other_schemes_are_refused_by_name() {
    let err = MqttOptions::from_url("ws://127.0.0.1", None, Duration::from_secs(1))
        .expect_err("not MQTT");
    assert!(err.to_string().contains("`ws`"), "{err}");
}
