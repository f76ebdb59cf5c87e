//! Avro schemas (`schemaFormat: application/vnd.apache.avro…`) turned into
//! an equivalent JSON Schema, so Avro payloads sent as plain JSON are
//! validated like any other. The original schema is kept as registered.
//!
//! A union becomes `anyOf` of its branches in plain JSON, not Avro's
//! `{"type": value}` wrapping: a `["null", "string"]` field takes `null` or
//! a string. Logical types validate as their underlying type.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// Whether `format` names an Avro schema format.
pub fn is_avro(format: &str) -> bool {
    format.starts_with("application/vnd.apache.avro")
}

/// The JSON Schema equivalent of an Avro schema, or why it is not one.
pub fn to_json_schema(avro: &Value) -> Result<Value, String> {
    let mut converter = Converter {
        definitions: BTreeMap::new(),
        namespace: None,
    };
    let root = converter.convert(avro)?;
    let mut out = match root {
        Value::Object(map) => map,
        other => return Ok(other),
    };
    if !converter.definitions.is_empty() {
        out.insert(
            "definitions".into(),
            Value::Object(converter.definitions.into_iter().collect()),
        );
    }
    Ok(Value::Object(out))
}

struct Converter {
    /// Named types (records, enums, fixed) by full name.
    definitions: BTreeMap<String, Value>,
    namespace: Option<String>,
}

impl Converter {
    fn convert(&mut self, avro: &Value) -> Result<Value, String> {
        match avro {
            Value::String(name) => self.named_or_primitive(name),
            Value::Array(branches) => {
                let any_of = branches
                    .iter()
                    .map(|b| self.convert(b))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(json!({ "anyOf": any_of }))
            }
            Value::Object(map) => self.complex(map),
            other => Err(format!("`{other}` is not an Avro schema")),
        }
    }

    fn named_or_primitive(&mut self, name: &str) -> Result<Value, String> {
        if let Some(primitive) = primitive(name) {
            return Ok(primitive);
        }
        let full = self.full_name(name, None);
        for candidate in [full.as_str(), name] {
            if self.definitions.contains_key(candidate) {
                return Ok(json!({ "$ref": format!("#/definitions/{candidate}") }));
            }
        }
        Err(format!("Avro type `{name}` is not defined before its use"))
    }

    fn complex(&mut self, map: &Map<String, Value>) -> Result<Value, String> {
        let kind = map
            .get("type")
            .ok_or("an Avro schema object needs `type`")?;
        let Some(kind) = kind.as_str() else {
            // `{"type": ["null", "string"]}` or `{"type": {...}}` nests a schema.
            return self.convert(kind);
        };
        match kind {
            "record" | "error" => self.record(map),
            "enum" => self.named(map, |_, m| {
                let symbols = m
                    .get("symbols")
                    .cloned()
                    .ok_or("an Avro enum needs `symbols`")?;
                Ok(json!({ "type": "string", "enum": symbols }))
            }),
            "fixed" => self.named(map, |_, _| Ok(json!({ "type": "string" }))),
            "array" => {
                let items = self.convert(map.get("items").ok_or("an Avro array needs `items`")?)?;
                Ok(json!({ "type": "array", "items": items }))
            }
            "map" => {
                let values =
                    self.convert(map.get("values").ok_or("an Avro map needs `values`")?)?;
                Ok(json!({ "type": "object", "additionalProperties": values }))
            }
            other => self.named_or_primitive(other),
        }
    }

    fn record(&mut self, map: &Map<String, Value>) -> Result<Value, String> {
        self.named(map, |this, m| {
            let fields = m
                .get("fields")
                .and_then(Value::as_array)
                .ok_or("an Avro record needs `fields`")?;
            let mut properties = Map::new();
            let mut required = Vec::new();
            for field in fields {
                let name = field
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or("an Avro field needs `name`")?;
                let kind = field
                    .get("type")
                    .ok_or_else(|| format!("Avro field `{name}` needs `type`"))?;
                properties.insert(name.to_owned(), this.convert(kind)?);
                if field.get("default").is_none() {
                    required.push(Value::String(name.to_owned()));
                }
            }
            Ok(json!({ "type": "object", "properties": properties, "required": required }))
        })
    }

    /// Registers a named type first (so that it can refer to itself), then
    /// converts its body, and refers to it.
    fn named(
        &mut self,
        map: &Map<String, Value>,
        body: impl FnOnce(&mut Self, &Map<String, Value>) -> Result<Value, String>,
    ) -> Result<Value, String> {
        let name = map
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a named Avro type needs `name`")?;
        let namespace = map.get("namespace").and_then(Value::as_str);
        let full = self.full_name(name, namespace);
        self.definitions.insert(full.clone(), json!({}));
        let outer = self.namespace.clone();
        if let Some((space, _)) = full.rsplit_once('.') {
            self.namespace = Some(space.to_owned());
        }
        let converted = body(self, map);
        self.namespace = outer;
        self.definitions.insert(full.clone(), converted?);
        Ok(json!({ "$ref": format!("#/definitions/{full}") }))
    }

    fn full_name(&self, name: &str, namespace: Option<&str>) -> String {
        if name.contains('.') {
            return name.to_owned();
        }
        match namespace
            .map(str::to_owned)
            .or_else(|| self.namespace.clone())
        {
            Some(space) if !space.is_empty() => format!("{space}.{name}"),
            _ => name.to_owned(),
        }
    }
}

fn primitive(name: &str) -> Option<Value> {
    Some(match name {
        "null" => json!({ "type": "null" }),
        "boolean" => json!({ "type": "boolean" }),
        "int" => json!({ "type": "integer", "minimum": i32::MIN, "maximum": i32::MAX }),
        "long" => json!({ "type": "integer" }),
        "float" | "double" => json!({ "type": "number" }),
        "bytes" | "string" => json!({ "type": "string" }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
