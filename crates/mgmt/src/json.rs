//! JSON as leniently as ARM reads it: trailing commas are accepted (the seed's request body ends an object
//! with one), and property names are matched case-insensitively.

use serde_json::Value;

/// Parse, tolerating a trailing comma before `}` or `]` (outside strings).
pub fn parse_lenient(b: &[u8]) -> Result<Value, String> {
    let s = std::str::from_utf8(b).map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(s.len());
    let mut in_str = false;
    let mut escaped = false;
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        if c == '"' {
            in_str = true;
        }
        if c == ',' {
            let next = chars[i + 1..].iter().find(|x| !x.is_whitespace());
            if matches!(next, Some('}') | Some(']')) {
                continue;
            }
        }
        out.push(c);
    }
    serde_json::from_str(&out).map_err(|e| e.to_string())
}

/// Lower-case every object key, recursively, so lookups are case-insensitive.
pub fn lowercase_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.to_lowercase(), lowercase_keys(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(lowercase_keys).collect()),
        x => x,
    }
}

/// Fuzz target: never panics.
pub fn fuzz(data: &[u8]) {
    if let Ok(v) = parse_lenient(data) {
        let _ = lowercase_keys(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_body_with_its_trailing_comma_parses() {
        let body = br#"{
    "properties":{
        "TargetDatabase":"SalesDb",
        "SourceEndpoint":"TCP://10.0.0.4:5022",
        "PrimaryAvailabilityGroupName":"AG_SalesDb",
        "SecondaryAvailabilityGroupName":"mi1",
    }
}"#;
        let v = lowercase_keys(parse_lenient(body).unwrap());
        assert_eq!(v["properties"]["targetdatabase"], "SalesDb");
        assert_eq!(parse_lenient(br#"{"a":"x,}"}"#).unwrap()["a"], "x,}");
        assert!(parse_lenient(b"{").is_err());
        for i in 0..body.len() {
            fuzz(&body[..i]);
        }
    }
}
