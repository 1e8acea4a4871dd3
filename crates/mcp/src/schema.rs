//! A compact JSON Schema validator for tool arguments.
//!
//! rmcp carries schemas but does not validate arguments against them. This
//! checks the keywords tool schemas use in practice: `type` (string or list),
//! `properties`, `required`, `additionalProperties` (bool or schema), `items`,
//! `enum`, `const`, `minimum`/`maximum` and their exclusive forms,
//! `minLength`/`maxLength`, `minItems`/`maxItems`, `allOf`/`anyOf`/`oneOf`
//! and `not`. Keywords it does not know (`pattern`, `format`, `$ref`...) are
//! accepted without checking, so it never rejects a value a full validator
//! would accept for those keywords. Used for incoming calls (a violation is a
//! `-32602` Invalid params error) and for discovery's input-schema
//! compatibility filter.

use serde_json::{Map, Value};

/// Deepest nesting of schema the validator follows (guards hostile schemas
/// received in service records).
pub const MAX_DEPTH: usize = 64;

/// Check `value` against `schema`; the error names the first violation and where.
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    check(schema, value, "$", 0)
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => {
            v.as_i64().is_some()
                || v.as_u64().is_some()
                || v.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => true,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(schema: &Value, v: &Value, at: &str, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{at}: schema nested deeper than {MAX_DEPTH}"));
    }
    let s = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(format!("{at}: no value is allowed here")),
        Value::Object(s) => s,
        _ => return Ok(()),
    };
    if let Some(ty) = s.get("type") {
        let ok = match ty {
            Value::String(t) => type_matches(t, v),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(t, v)),
            _ => true,
        };
        if !ok {
            return Err(format!("{at}: expected type {ty}, got {}", type_name(v)));
        }
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(v)
    {
        return Err(format!(
            "{at}: value {v} is not one of {}",
            Value::Array(options.clone())
        ));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        return Err(format!("{at}: value must be {c}"));
    }
    if let Some(n) = v.as_f64() {
        bound(s, "minimum", at, |m| n >= m, "at least")?;
        bound(s, "maximum", at, |m| n <= m, "at most")?;
        bound(s, "exclusiveMinimum", at, |m| n > m, "greater than")?;
        bound(s, "exclusiveMaximum", at, |m| n < m, "less than")?;
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as f64;
        bound(
            s,
            "minLength",
            at,
            |m| len >= m,
            "at least this many characters:",
        )?;
        bound(
            s,
            "maxLength",
            at,
            |m| len <= m,
            "at most this many characters:",
        )?;
    }
    if let Some(items) = v.as_array() {
        let len = items.len() as f64;
        bound(s, "minItems", at, |m| len >= m, "at least this many items:")?;
        bound(s, "maxItems", at, |m| len <= m, "at most this many items:")?;
        if let Some(item_schema) = s.get("items").filter(|i| i.is_object() || i.is_boolean()) {
            for (i, item) in items.iter().enumerate() {
                check(item_schema, item, &format!("{at}[{i}]"), depth + 1)?;
            }
        }
    }
    if let Some(obj) = v.as_object() {
        check_object(s, obj, at, depth)?;
    }
    if let Some(Value::Array(all)) = s.get("allOf") {
        for sub in all {
            check(sub, v, at, depth + 1)?;
        }
    }
    if let Some(Value::Array(any)) = s.get("anyOf")
        && !any.iter().any(|sub| check(sub, v, at, depth + 1).is_ok())
    {
        return Err(format!("{at}: value matches none of anyOf"));
    }
    if let Some(Value::Array(one)) = s.get("oneOf") {
        let n = one
            .iter()
            .filter(|sub| check(sub, v, at, depth + 1).is_ok())
            .count();
        if n != 1 {
            return Err(format!(
                "{at}: value matches {n} of oneOf, expected exactly 1"
            ));
        }
    }
    if let Some(not) = s.get("not")
        && check(not, v, at, depth + 1).is_ok()
    {
        return Err(format!("{at}: value matches a 'not' schema"));
    }
    Ok(())
}

fn bound(
    s: &Map<String, Value>,
    key: &str,
    at: &str,
    ok: impl Fn(f64) -> bool,
    what: &str,
) -> Result<(), String> {
    match s.get(key).and_then(Value::as_f64) {
        Some(m) if !ok(m) => Err(format!("{at}: must be {what} {m} ({key})")),
        _ => Ok(()),
    }
}

fn check_object(
    s: &Map<String, Value>,
    obj: &Map<String, Value>,
    at: &str,
    depth: usize,
) -> Result<(), String> {
    if let Some(Value::Array(required)) = s.get("required") {
        for r in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(r) {
                return Err(format!("{at}: missing required property '{r}'"));
            }
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    for (k, val) in obj {
        let here = format!("{at}.{k}");
        match props.and_then(|p| p.get(k)) {
            Some(ps) => check(ps, val, &here, depth + 1)?,
            None => match s.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    return Err(format!("{at}: property '{k}' is not allowed"));
                }
                Some(extra @ Value::Object(_)) => check(extra, val, &here, depth + 1)?,
                _ => {}
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validates_common_keywords() {
        let s = json!({
            "type": "object",
            "properties": {
                "prompt": {"type": "string", "minLength": 1},
                "n": {"type": "integer", "minimum": 1, "maximum": 8},
                "mode": {"enum": ["fast", "good"]},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}
            },
            "required": ["prompt"],
            "additionalProperties": false
        });
        assert!(
            validate(
                &s,
                &json!({"prompt": "hi", "n": 3, "mode": "fast", "tags": ["a"]})
            )
            .is_ok()
        );
        assert!(
            validate(&s, &json!({}))
                .unwrap_err()
                .contains("missing required property 'prompt'")
        );
        assert!(
            validate(&s, &json!({"prompt": 5}))
                .unwrap_err()
                .contains("$.prompt")
        );
        assert!(
            validate(&s, &json!({"prompt": "x", "n": 9}))
                .unwrap_err()
                .contains("at most")
        );
        assert!(validate(&s, &json!({"prompt": "x", "n": 1.5})).is_err());
        assert!(validate(&s, &json!({"prompt": "x", "mode": "slow"})).is_err());
        assert!(
            validate(&s, &json!({"prompt": "x", "tags": ["a", 1]}))
                .unwrap_err()
                .contains("$.tags[1]")
        );
        assert!(
            validate(&s, &json!({"prompt": "x", "zzz": 1}))
                .unwrap_err()
                .contains("not allowed")
        );
        assert!(validate(&s, &json!({"prompt": ""})).is_err());
    }

    #[test]
    fn combinators_and_unknown_keywords() {
        let s = json!({"anyOf": [{"type": "string"}, {"type": "integer"}], "format": "whatever"});
        assert!(validate(&s, &json!("a")).is_ok());
        assert!(validate(&s, &json!(1)).is_ok());
        assert!(validate(&s, &json!(true)).is_err());
        assert!(validate(&json!({"not": {"type": "null"}}), &Value::Null).is_err());
        assert!(validate(&json!(true), &json!({"x": 1})).is_ok());
    }
}
