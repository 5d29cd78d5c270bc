//! CRD structural schemas on write, in the API server's order: prune unknown fields, apply
//! defaults (`defaults.rs`), validate. Validation covers `type` (with `nullable`,
//! `x-kubernetes-int-or-string`), `enum`, `minimum`/`maximum` (and their exclusive forms),
//! `minLength`/`maxLength`, `pattern`, `minItems`/`maxItems`, `required`; `anyOf`/`oneOf`/
//! `allOf` branches and `x-kubernetes-validations` (CEL) are not evaluated.

use serde_json::Value;

/// Root fields every object keeps, whatever the schema says.
const ROOT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

/// Drop fields the schema does not know, unless it preserves unknown fields there.
pub fn prune(schema: &Value, value: &mut Value, root: bool) {
    let preserve =
        schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    let embedded =
        schema.get("x-kubernetes-embedded-resource").and_then(Value::as_bool) == Some(true);
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if let Some(properties) = properties {
                if !preserve && additional.is_none() {
                    map.retain(|key, _| {
                        properties.contains_key(key)
                            || ((root || embedded) && ROOT_FIELDS.contains(&key.as_str()))
                    });
                }
                for (key, child) in map.iter_mut() {
                    if let Some(property) = properties.get(key) {
                        prune(property, child, false);
                    }
                }
            } else if let Some(additional) = additional {
                for child in map.values_mut() {
                    prune(additional, child, false);
                }
            } else if !preserve
                && !root
                && !embedded
                && schema.get("type").and_then(Value::as_str) == Some("object")
            {
                map.clear();
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune(item_schema, item, false);
                }
            }
        }
        _ => {}
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Every violation as `path: Invalid value: v: reason` (or `path: Required value`).
pub fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true)
            && schema.get("type").is_some()
        {
            errors.push(format!(
                "{path}: Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                schema["type"].as_str().unwrap_or("object")
            ));
        }
        return;
    }
    let int_or_string =
        schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if int_or_string {
        if !matches!(type_name(value), "integer" | "string") {
            errors.push(format!(
                "{path}: Invalid value: {}: {path} in body must be of type int-or-string: {:?}",
                show(value),
                type_name(value)
            ));
        }
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let fits = actual == expected || (expected == "number" && actual == "integer");
        if !fits {
            errors.push(format!("{path}: Invalid value: {:?}: {path} in body must be of type {expected}: {actual:?}", actual));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let supported: Vec<String> = options.iter().map(show).collect();
        errors.push(format!(
            "{path}: Unsupported value: {}: supported values: {}",
            show(value),
            supported.join(", ")
        ));
    }
    if let Some(number) = value.as_f64() {
        let exclusive_min = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
        let exclusive_max = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
        if let Some(minimum) = schema.get("minimum").and_then(Value::as_f64)
            && (number < minimum || (exclusive_min && number == minimum))
        {
            errors.push(format!("{path}: Invalid value: {}: {path} in body should be greater than or equal to {minimum}", show(value)));
        }
        if let Some(maximum) = schema.get("maximum").and_then(Value::as_f64)
            && (number > maximum || (exclusive_max && number == maximum))
        {
            errors.push(format!("{path}: Invalid value: {}: {path} in body should be less than or equal to {maximum}", show(value)));
        }
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && length < min
        {
            errors.push(format!(
                "{path}: Invalid value: {}: {path} in body should be at least {min} chars long",
                show(value)
            ));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && length > max
        {
            errors.push(format!("{path}: Too long: may not be more than {max} bytes"));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
            && let Ok(regex) = regex::Regex::new(pattern)
            && !regex.is_match(text)
        {
            errors.push(format!(
                "{path}: Invalid value: {}: {path} in body should match '{pattern}'",
                show(value)
            ));
        }
    }
    match value {
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                errors.push(format!(
                    "{path}: Invalid value: {}: {path} in body should have at least {min} items",
                    items.len()
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                errors.push(format!(
                    "{path}: Too many: {}: must have at most {max} items",
                    items.len()
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(map) => {
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(required) {
                    errors.push(format!("{}: Required value", join(path, required)));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                if path.is_empty() && ROOT_FIELDS.contains(&key.as_str()) {
                    continue;
                }
                if let Some(property) = properties.and_then(|p| p.get(key)) {
                    validate(property, child, &join(path, key), errors);
                } else if let Some(additional) = additional {
                    validate(additional, child, &join(path, key), errors);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "required": ["spec"], "properties": {
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10},
                "policy": {"type": "string", "enum": ["a", "b"]},
                "size": {"type": "string", "pattern": "^[0-9]+(Mi|Gi)?$", "nullable": true},
                "port": {"x-kubernetes-int-or-string": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}
            }},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }})
    }

    #[test]
    fn prune_drops_unknown_fields_but_keeps_root_metadata_and_preserved_subtrees() {
        let mut object = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "junk": 1,
            "spec": {"replicas": 1, "typo": true, "labels": {"free": "form"}}, "status": {"anything": [1]}});
        prune(&schema(), &mut object, true);
        assert_eq!(
            object,
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
            "spec": {"replicas": 1, "labels": {"free": "form"}}, "status": {"anything": [1]}})
        );
    }

    #[test]
    fn validate_reports_every_violation_with_its_path() {
        let object = json!({"metadata": {"name": "n"}, "spec": {"replicas": 11, "policy": "c", "size": "lots", "port": true, "labels": {"a": 1}}});
        let mut errors = Vec::new();
        validate(&schema(), &object, "", &mut errors);
        let mut expected = vec![
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
            "spec.policy: Unsupported value: \"c\": supported values: \"a\", \"b\"",
            "spec.size: Invalid value: \"lots\": spec.size in body should match '^[0-9]+(Mi|Gi)?$'",
            "spec.port: Invalid value: true: spec.port in body must be of type int-or-string: \"boolean\"",
            "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\"",
        ];
        expected.sort();
        errors.sort();
        assert_eq!(errors, expected);
        let mut missing = Vec::new();
        validate(&schema(), &json!({"metadata": {}}), "", &mut missing);
        assert_eq!(missing, vec!["spec: Required value"]);
        let mut fine = Vec::new();
        validate(
            &schema(),
            &json!({"spec": {"replicas": 3, "size": null, "port": "redis"}}),
            "",
            &mut fine,
        );
        assert_eq!(fine, Vec::<String>::new());
    }
}
