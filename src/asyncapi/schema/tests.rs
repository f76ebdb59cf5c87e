use serde_json::json;

use super::*;

#[test]
fn a_declared_draft_is_honoured() {
    // `prefixItems` exists from draft 2020-12 on; draft 07 ignores it.
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "array",
        "prefixItems": [{"type": "integer"}]
    });
    let validator = compile_payload(&schema, &json!({})).expect("compiles");
    assert!(!validator.is_valid(&json!(["not an integer"])));
    let undeclared = json!({"type": "array", "prefixItems": [{"type": "integer"}]});
    let validator = compile_payload(&undeclared, &json!({})).expect("compiles");
    assert!(
        validator.is_valid(&json!(["not an integer"])),
        "draft 07 by default"
    );
}

#[test]
fn references_left_by_cycles_resolve_against_the_document() {
    let document = json!({"components": {"schemas": {"Node": {
        "type": "object",
        "properties": {"next": {"$ref": "#/components/schemas/Node"}, "v": {"type": "integer"}}
    }}}});
    let schema =
        json!({"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}});
    let validator = compile_payload(&schema, &document).expect("compiles");
    assert!(validator.is_valid(&json!({"next": {"next": {"v": 1}}})));
    assert!(!validator.is_valid(&json!({"next": {"next": {"v": "x"}}})));
}

#[test]
fn every_supported_version_has_its_official_schema() {
    for version in crate::asyncapi::SUPPORTED_VERSIONS {
        assert!(validator(version).is_some(), "{version}");
    }
}
