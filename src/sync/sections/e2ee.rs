//! End-to-end encryption sections (spec "End-to-End Encryption" / "Send-to-Device"):
//! one-time-key counts, unused fallback keys, to-device messages and device-list changes.
use std::collections::BTreeMap;

use serde_json::Value;

use super::SyncContext;
use crate::e2ee::{E2ee, SIGNED_CURVE25519};
use crate::error::Result;
use crate::sync::response::DeviceLists;

#[derive(Debug, Default)]
pub struct E2eeSection {
    pub one_time_keys_count: BTreeMap<String, i64>,
    pub unused_fallback_key_types: Vec<String>,
    pub to_device: Vec<Value>,
    /// Only on incremental syncs.
    pub device_lists: Option<DeviceLists>,
}

impl E2eeSection {
    /// Whether anything here is news (key counts alone are not).
    pub fn has_news(&self) -> bool {
        !self.to_device.is_empty()
            || self.device_lists.as_ref().is_some_and(|d| !d.changed.is_empty() || !d.left.is_empty())
    }
}

/// Delivering to-device messages here acknowledges the ones the previous `since` saw.
pub async fn e2ee_section(e2ee: &E2ee, ctx: &SyncContext<'_>) -> Result<E2eeSection> {
    let session = ctx.session;
    let counts = e2ee.key_counts(&session.user_id, &session.device_id).await?;
    let mut one_time_keys_count = counts.one_time.clone();
    one_time_keys_count.entry(SIGNED_CURVE25519.to_owned()).or_insert(0);
    let to_device = e2ee.take_to_device(session, ctx.since, ctx.upto).await?;
    let device_lists = match ctx.since {
        Some(since) => {
            let (changed, left) = e2ee.device_list_delta(&session.user_id, since, ctx.upto).await?;
            Some(DeviceLists { changed, left })
        }
        None => None,
    };
    Ok(E2eeSection {
        one_time_keys_count,
        unused_fallback_key_types: counts.unused_fallback.clone(),
        to_device,
        device_lists,
    })
}
