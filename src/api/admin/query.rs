//! Bounded parsing of the admin API's query strings and path parameters, with Matrix errors.
use std::collections::HashMap;

use crate::error::{MatrixError, Result};

/// The query string as a map; a key given twice, or a query over 4 KiB, is refused.
pub fn params(raw: Option<&str>) -> Result<HashMap<String, String>> {
    let raw = raw.unwrap_or("");
    if raw.len() > 4096 {
        return Err(MatrixError::invalid_param("query string is too long"));
    }
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(MatrixError::invalid_param(format!("{k} given twice")));
        }
    }
    Ok(out)
}

/// An integer parameter within `[min, max]`, or `default` when absent.
pub fn int(params: &HashMap<String, String>, key: &str, default: i64, min: i64, max: i64) -> Result<i64> {
    match params.get(key) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(MatrixError::invalid_param(format!("{key} must be an integer in {min}..={max}"))),
        },
    }
}

/// A Matrix user id as the admin API accepts it: `@localpart:server`, at most 255 bytes.
pub fn user_id(s: &str) -> Result<&str> {
    if s.len() <= 255 && s.starts_with('@') && s[1..].contains(':') && !s.chars().any(char::is_control) {
        Ok(s)
    } else {
        Err(MatrixError::invalid_param("not a valid user id"))
    }
}

/// A device or room id in a path: non-empty, at most 255 bytes, no control characters.
pub fn id(s: &str, what: &str) -> Result<()> {
    if s.is_empty() || s.len() > 255 || s.chars().any(char::is_control) {
        return Err(MatrixError::invalid_param(format!("not a valid {what}")));
    }
    Ok(())
}
