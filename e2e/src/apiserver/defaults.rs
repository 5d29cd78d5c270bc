//! Defaulting from a CRD's structural schema, as the API server does on create and update:
//! a missing property with a `default` gets it, recursively through objects, arrays and maps.

use serde_json::Value;

pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, property) in properties {
                    if !map.contains_key(name)
                        && let Some(default) = property.get("default")
                    {
                        map.insert(name.clone(), default.clone());
                    }
                    if let Some(child) = map.get_mut(name) {
                        apply_defaults(property, child);
                    }
                }
            }
            if let Some(additional) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for child in map.values_mut() {
                    apply_defaults(additional, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_fill_missing_properties_at_every_depth() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "replicas": {"type": "integer", "default": 1},
            "engine": {"type": "object", "default": {}, "properties": {"shards": {"type": "integer", "default": 16}}},
            "ports": {"type": "array", "items": {"type": "object", "properties": {"protocol": {"type": "string", "default": "TCP"}}}}
        }}}});
        let mut object = json!({"spec": {"replicas": 3, "ports": [{"port": 1}]}});
        apply_defaults(&schema, &mut object);
        assert_eq!(
            object,
            json!({"spec": {"replicas": 3, "engine": {"shards": 16}, "ports": [{"port": 1, "protocol": "TCP"}]}})
        );
    }
}
