//! Stream tokens. `s<N>` (from `/sync`) and `t<N>` (pagination) both name the point after
//! stream position N: everything at or below N is before the token.
use crate::error::{MatrixError, Result};

pub fn parse(token: &str) -> Result<i64> {
    let digits = token.strip_prefix('s').or_else(|| token.strip_prefix('t')).unwrap_or(token);
    digits
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| MatrixError::invalid_param(format!("invalid stream token '{token}'")))
}

pub fn sync_token(pos: i64) -> String {
    format!("s{pos}")
}

pub fn pagination_token(pos: i64) -> String {
    format!("t{pos}")
}
