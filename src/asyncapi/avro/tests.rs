use serde_json::json;

use super::*;

fn validator(avro: serde_json::Value) -> jsonschema::Validator {
    let schema = to_json_schema(&avro).expect("converts");
    jsonschema::validator_for(&schema).expect("compiles")
}

#[test]
fn a_record_checks_field_types_and_required_fields() {
    let user = validator(json!({
        "type": "record",
        "name": "User",
        "namespace": "com.example",
        "fields": [
            {"name": "name", "type": "string"},
            {"name": "age", "type": "int"},
            {"name": "email", "type": ["null", "string"], "default": null},
            {"name": "role", "type": {"type": "enum", "name": "Role", "symbols": ["ADMIN", "USER"]}},
            {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []}
        ]
    }));
    assert!(user.is_valid(&json!({"name": "a", "age": 3, "role": "USER"})));
    assert!(user
        .is_valid(&json!({"name": "a", "age": 3, "role": "ADMIN", "email": null, "tags": ["x"]})));
    assert!(
        !user.is_valid(&json!({"name": "a", "role": "USER"})),
        "age has no default"
    );
    assert!(
        !user.is_valid(&json!({"name": "a", "age": "3", "role": "USER"})),
        "age is an int"
    );
    assert!(
        !user.is_valid(&json!({"name": "a", "age": 3, "role": "ROOT"})),
        "role is an enum"
    );
    assert!(
        !user.is_valid(&json!({"name": "a", "age": 4_000_000_000_i64, "role": "USER"})),
        "int is 32-bit"
    );
}

#[test]
fn a_recursive_record_refers_to_itself() {
    let list = validator(json!({
        "type": "record",
        "name": "Node",
        "fields": [
            {"name": "value", "type": "long"},
            {"name": "next", "type": ["null", "Node"]}
        ]
    }));
    assert!(list.is_valid(&json!({"value": 1, "next": {"value": 2, "next": null}})));
    assert!(!list.is_valid(&json!({"value": 1, "next": {"value": "two", "next": null}})));
}

#[test]
fn an_unknown_type_is_an_error_naming_it() {
    let error = to_json_schema(
        &json!({"type": "record", "name": "R", "fields": [{"name": "x", "type": "Nope"}]}),
    )
    .expect_err("Nope is undefined");
    assert!(error.contains("Nope"), "{error}");
}
