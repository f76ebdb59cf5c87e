//! The loader never panics, whatever it is given: arbitrary text, arbitrary
//! JSON, and documents shaped like AsyncAPI with references pointing
//! anywhere.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use stepflow_gateway::asyncapi::{load, load::load_value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z$#/{}~0-9.]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys an AsyncAPI document uses, so that generated documents reach deep
/// into the loader.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("$ref".to_owned()),
        Just("channels".to_owned()),
        Just("operations".to_owned()),
        Just("messages".to_owned()),
        Just("message".to_owned()),
        Just("publish".to_owned()),
        Just("subscribe".to_owned()),
        Just("payload".to_owned()),
        Just("parameters".to_owned()),
        Just("servers".to_owned()),
        Just("traits".to_owned()),
        Just("channel".to_owned()),
        Just("address".to_owned()),
        Just("action".to_owned()),
        Just("oneOf".to_owned()),
        Just("components".to_owned()),
        "[a-z{}/]{1,6}",
    ]
}

fn reference() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just("#".to_owned()),
        Just("#/components/schemas/a".to_owned()),
        Just("#/channels/a".to_owned()),
        Just("#/channels/a/messages/m".to_owned()),
        Just("other.yaml#/x".to_owned()),
        Just("https://example.com/x".to_owned()),
        "#(/[a-z~01]{1,4}){0,4}",
    ]
    .prop_map(|r| json!({ "$ref": r }))
}

fn asyncapi_like() -> impl Strategy<Value = Value> {
    let body = prop_oneof![json_value(), reference()];
    (
        prop_oneof![Just("2.0.0"), Just("2.6.0"), Just("3.0.0")],
        prop::collection::btree_map(key(), body, 0..8),
    )
        .prop_map(|(version, rest)| {
            let mut root: Map<String, Value> = rest.into_iter().collect();
            root.insert("asyncapi".into(), json!(version));
            root.insert("info".into(), json!({"title": "t", "version": "1"}));
            Value::Object(root)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = load(&text);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        let _ = load_value(value, &Default::default());
    }

    #[test]
    fn asyncapi_shaped_documents_never_panic(document in asyncapi_like()) {
        let text = document.to_string();
        let _ = load(&text);
        let _ = load_value(document, &Default::default());
    }
}
