//! Stream tokens. `s<N>` (from `/sync`) and `t<N>` (pagination) both name the point after
//! stream position N: everything at or below N is before the token.
use crate::error::{MatrixError, Result};

/// Stream positions never come near this; a token above it is forged (and `pos + 1` on it
/// must not wrap).
pub const MAX_POSITION: i64 = 1 << 53;

pub fn parse(token: &str) -> Result<i64> {
    let digits = token.strip_prefix('s').or_else(|| token.strip_prefix('t')).unwrap_or(token);
    digits
        .parse::<i64>()
        .ok()
        .filter(|n| (0..=MAX_POSITION).contains(n))
        .ok_or_else(|| MatrixError::invalid_param(format!("invalid stream token '{token:.64}'")))
}

/// A token the server could have handed out: at most `current`, the newest stream position.
pub fn parse_at_most(token: &str, current: i64) -> Result<i64> {
    let pos = parse(token)?;
    if pos > current {
        return Err(MatrixError::invalid_param(format!("stream token '{token:.64}' is beyond the current position")));
    }
    Ok(pos)
}

pub fn sync_token(pos: i64) -> String {
    format!("s{pos}")
}

pub fn pagination_token(pos: i64) -> String {
    format!("t{pos}")
}
