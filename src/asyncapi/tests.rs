use serde_json::json;

use super::*;

fn load_ok(text: &str) -> Document {
    match load(text) {
        Ok((document, _)) => document,
        Err(error) => panic!("expected a valid document: {:?}", error.diagnostics),
    }
}

fn rules(text: &str) -> Vec<(&'static str, String)> {
    let error = load(text).expect_err("expected diagnostics");
    error
        .diagnostics
        .into_iter()
        .map(|d| (d.rule, d.pointer))
        .collect()
}

const IOT: &str = "asyncapi: 2.5.0
info: {title: IoT Device API, version: 1.0.0}
servers:
  production: {url: mqtt://broker.example.com, protocol: mqtt}
channels:
  device/{deviceId}/data:
    publish:
      message: {$ref: '#/components/messages/DeviceData'}
components:
  messages:
    DeviceData:
      payload:
        type: object
        properties:
          temperature: {type: number}
";

#[test]
fn a_2x_publish_operation_lets_clients_send() {
    let document = load_ok(IOT);
    assert_eq!(document.title, "IoT Device API");
    let warning = &document.warnings[0];
    assert_eq!(warning.rule, "channel-parameters", "undeclared deviceId");
    assert_eq!(warning.severity, Severity::Warning);
    let channel = &document.channels[0];
    assert_eq!(channel.address, "device/{deviceId}/data");
    assert!(channel.client_publish && !channel.client_subscribe);
    let message = &channel.messages[0];
    assert_eq!(message.name, "DeviceData", "named after its component");
    assert_eq!(
        message.payload.as_ref().expect("payload")["properties"]["temperature"]["type"],
        "number"
    );
    assert_eq!(document.servers[0].url, "mqtt://broker.example.com");
}

#[test]
fn json_text_loads_like_yaml() {
    let text = json!({
        "asyncapi": "3.0.0",
        "info": {"title": "T", "version": "1"},
        "channels": {"c": {"address": "a/b", "messages": {"m": {"payload": {"type": "string"}}}}},
        "operations": {"o": {"action": "send", "channel": {"$ref": "#/channels/c"}}}
    })
    .to_string();
    let (document, format) = load(&text).expect("valid");
    assert_eq!(format, SourceFormat::Json);
    let channel = &document.channels[0];
    assert!(
        channel.client_subscribe && !channel.client_publish,
        "3.0 send: clients receive"
    );
    assert!(
        channel.messages[0].client_subscribe,
        "an operation without messages covers all"
    );
}

#[test]
fn server_variables_take_their_defaults() {
    let text = "asyncapi: 2.6.0
info: {title: T, version: '1'}
servers:
  s:
    url: '{host}:{port}'
    protocol: mqtt
    variables:
      host: {default: 127.0.0.1}
      port: {default: '1883'}
channels: {}
";
    assert_eq!(load_ok(text).servers[0].url, "mqtt://127.0.0.1:1883");
    let from_enum = text.replace("port: {default: '1883'}", "port: {enum: ['8883', '1883']}");
    assert_eq!(load_ok(&from_enum).servers[0].url, "mqtt://127.0.0.1:8883");
    let undeclared = text.replace("port: {default: '1883'}", "other: {default: x}");
    let expected = vec![("server-variables", "/servers/s/variables/port".to_owned())];
    assert_eq!(rules(&undeclared), expected);
}

#[test]
fn v3_servers_join_host_and_pathname() {
    let text = "asyncapi: 3.0.0
info: {title: T, version: '1'}
servers:
  ws: {host: 'example.org:{port}', pathname: /live, protocol: wss, variables: {port: {default: '443'}}}
";
    assert_eq!(load_ok(text).servers[0].url, "wss://example.org:443/live");
}

#[test]
fn trait_precedence_follows_the_version() {
    let v2 = "asyncapi: 2.6.0
info: {title: T, version: '1'}
channels:
  c:
    subscribe:
      bindings: {mqtt: {qos: 2}}
      traits: [{bindings: {mqtt: {qos: 1}}}]
      message: {payload: {type: string}}
";
    assert_eq!(
        load_ok(v2).channels[0].operation_bindings["mqtt"]["qos"],
        1,
        "2.x: the trait wins"
    );
    let v3 = "asyncapi: 3.0.0
info: {title: T, version: '1'}
channels:
  c: {address: c, messages: {m: {payload: {type: string}}}}
operations:
  o:
    action: send
    channel: {$ref: '#/channels/c'}
    bindings: {mqtt: {qos: 2}}
    traits: [{bindings: {mqtt: {qos: 1}}}]
";
    assert_eq!(
        load_ok(v3).channels[0].operation_bindings["mqtt"]["qos"],
        2,
        "3.0: the operation wins"
    );
}

#[test]
fn a_schema_that_refers_to_itself_resolves_without_looping() {
    let text = "asyncapi: 2.6.0
info: {title: T, version: '1'}
channels:
  tree:
    publish:
      message:
        payload: {$ref: '#/components/schemas/Node'}
components:
  schemas:
    Node:
      type: object
      properties:
        children: {type: array, items: {$ref: '#/components/schemas/Node'}}
";
    let document = load_ok(text);
    let payload = document.channels[0].messages[0]
        .payload
        .clone()
        .expect("payload");
    assert_eq!(payload["type"], "object");
    assert_eq!(
        payload["properties"]["children"]["items"],
        json!({"$ref": "#/components/schemas/Node"})
    );
}

#[test]
fn every_problem_is_reported_with_its_pointer() {
    let text = "asyncapi: 2.6.0
info: {title: T}
channels:
  a:
    publish:
      message: {$ref: '#/components/messages/Missing'}
  b:
    subscribe:
      message: {$ref: 'other.yaml#/components/messages/M'}
";
    let found = rules(text);
    let has = |rule: &str, pointer: &str| found.iter().any(|(r, p)| *r == rule && p == pointer);
    assert!(has("required", "/info/version"), "{found:?}");
    assert!(
        has("unresolved-ref", "/channels/a/publish/message/$ref"),
        "{found:?}"
    );
    assert!(
        has("unresolved-ref", "/channels/b/subscribe/message/$ref"),
        "no file given: {found:?}"
    );
    assert!(
        has("schema", "/info"),
        "the official schema wants info.version too: {found:?}"
    );
}

#[test]
fn v3_operation_messages_must_belong_to_their_channel() {
    let text = "asyncapi: 3.0.0
info: {title: T, version: '1'}
channels:
  c: {address: c, messages: {m: {payload: {type: string}}}}
  d: {address: d, messages: {n: {payload: {type: string}}}}
operations:
  o:
    action: receive
    channel: {$ref: '#/channels/c'}
    messages: [{$ref: '#/channels/d/messages/n'}]
  p:
    action: receive
    channel: {$ref: '#/channels/nope'}
";
    assert_eq!(
        rules(text),
        vec![
            (
                "operation-messages-from-referred-channel",
                "/operations/o/messages/0".to_owned()
            ),
            ("unresolved-ref", "/operations/p/channel/$ref".to_owned()),
        ]
    );
}

#[test]
fn unsupported_versions_are_refused_by_name() {
    let error = load("asyncapi: 2.7.0\ninfo: {title: T, version: '1'}\n").expect_err("unsupported");
    let diagnostic = &error.diagnostics[0];
    assert_eq!(diagnostic.rule, "asyncapi-version");
    assert!(
        diagnostic.message.contains("2.7.0") && diagnostic.message.contains("3.0.0"),
        "{}",
        diagnostic.message
    );
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let error = load("asyncapi: 2.6.0\ninfo:\n  title: [unclosed\n").expect_err("bad YAML");
    let diagnostic = &error.diagnostics[0];
    assert_eq!(diagnostic.rule, "syntax");
    assert!(
        diagnostic.line.is_some_and(|line| line >= 3),
        "{diagnostic:?}"
    );
    let error = load("{\"asyncapi\": ").expect_err("bad JSON");
    assert_eq!(error.diagnostics[0].line, Some(1));
}

#[test]
fn a_non_object_document_is_refused() {
    assert_eq!(
        rules("- just\n- a list\n"),
        vec![("document-type", String::new())]
    );
}

#[test]
fn one_of_messages_each_become_a_message() {
    let text = "asyncapi: 2.6.0
info: {title: T, version: '1'}
channels:
  c:
    subscribe:
      message:
        oneOf:
          - {name: a, payload: {type: string}}
          - $ref: '#/components/messages/B'
components:
  messages:
    B: {payload: {type: integer}}
";
    let names: Vec<String> = load_ok(text).channels[0]
        .messages
        .iter()
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(names, vec!["a", "B"]);
}
