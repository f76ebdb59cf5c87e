//! Operation and message traits, merged with the precedence of each version.

use serde_json::Value;

/// Which side wins when a trait and the object set the same field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precedence {
    /// AsyncAPI 2.x: the trait's fields win over the object's.
    TraitWins,
    /// AsyncAPI 3.0: the object's fields win over the trait's.
    ObjectWins,
}

/// Returns `object` with `traits` merged in, without its `traits` field.
pub fn apply(object: &Value, traits: &[Value], precedence: Precedence) -> Value {
    let mut merged = match precedence {
        Precedence::TraitWins => object.clone(),
        Precedence::ObjectWins => Value::Object(Default::default()),
    };
    for applied in traits {
        merge(&mut merged, applied);
    }
    if precedence == Precedence::ObjectWins {
        merge(&mut merged, object);
    }
    if let Some(map) = merged.as_object_mut() {
        map.remove("traits");
    }
    merged
}

/// Merges `over` into `base`: objects field by field, anything else replaced.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}
