//! Send-to-device messaging (spec "Send-to-Device messaging"): `PUT /sendToDevice` queues a
//! message per recipient device; `/sync` hands them out in `to_device.events` and deletes
//! them once a later `since` shows the client got them.
use serde_json::{json, Map, Value};

use super::limits::*;
use super::E2ee;
use crate::accounts::Session;
use crate::error::{MatrixError, Result};
use crate::rooms::now_ms;

/// Transaction ids are remembered this long for idempotent retries.
const TXN_RETENTION_MS: i64 = 24 * 3600 * 1000;

impl E2ee {
    /// Queue `messages` (`{user: {device or "*": content}}`) of `event_type`. Idempotent per
    /// (sending device, `txn_id`): a retry returns success and queues nothing.
    pub async fn send_to_device(
        &self,
        sender: &Session,
        event_type: &str,
        txn_id: &str,
        messages: &Map<String, Value>,
    ) -> Result<()> {
        if event_type.is_empty() || event_type.len() > MAX_ID_BYTES || txn_id.is_empty() || txn_id.len() > MAX_ID_BYTES
        {
            return Err(MatrixError::invalid_param("event type and transaction id must be 1 to 255 bytes"));
        }
        let mut queued: Vec<(String, String, String)> = Vec::new();
        let mut recipients: Vec<String> = Vec::new();
        for (user, by_device) in messages {
            let by_device =
                by_device.as_object().ok_or_else(|| MatrixError::bad_json("messages must map user ids to devices"))?;
            if by_device.len() > MAX_TO_DEVICE_RECIPIENTS || queued.len() > MAX_TO_DEVICE_RECIPIENTS {
                return Err(MatrixError::TooLarge(format!("at most {MAX_TO_DEVICE_RECIPIENTS} recipient devices")));
            }
            let mut contents = Vec::with_capacity(by_device.len());
            for (device, content) in by_device {
                if !content.is_object() {
                    return Err(MatrixError::bad_json("each message content must be an object"));
                }
                let json = serde_json::to_string(content).map_err(|e| MatrixError::bad_json(e.to_string()))?;
                if json.len() > self.max_to_device_bytes {
                    return Err(MatrixError::TooLarge(format!(
                        "a to-device message may be at most {} bytes",
                        self.max_to_device_bytes
                    )));
                }
                contents.push((device, json));
            }
            // No federation: users of other servers and unknown users receive nothing.
            if !self.accounts.is_local(user) || !self.accounts.exists(user).await? {
                continue;
            }
            let devices: Vec<String> = self.accounts.devices(user).await?.into_iter().map(|d| d.device_id).collect();
            let queue: std::collections::HashMap<String, i64> =
                self.store.e2e_to_device_queue_lengths(user).await?.into_iter().collect();
            for (device, json) in contents {
                let targets: Vec<&String> = if device == "*" {
                    devices.iter().collect()
                } else {
                    devices.iter().filter(|d| *d == device).collect()
                };
                for d in targets {
                    if queue.get(d).copied().unwrap_or(0) >= MAX_TO_DEVICE_QUEUE {
                        return Err(MatrixError::LimitExceeded { retry_after_ms: 5000 });
                    }
                    queued.push((user.clone(), d.clone(), json.clone()));
                }
            }
            recipients.push(user.clone());
        }
        if queued.len() > MAX_TO_DEVICE_RECIPIENTS {
            return Err(MatrixError::TooLarge(format!("at most {MAX_TO_DEVICE_RECIPIENTS} recipient devices")));
        }
        let now = now_ms();
        let pos = self.stream.allocate();
        let sender_key = (sender.user_id.as_str(), sender.device_id.as_str());
        let fresh = self.store.e2e_enqueue_to_device(sender_key, txn_id, now, pos.pos, event_type, &queued).await?;
        let p = pos.pos;
        pos.complete();
        if !fresh {
            return Ok(());
        }
        for (user, device, _) in &queued {
            self.to_device_seen.entry((user.clone(), device.clone())).and_modify(|(q, _)| *q += 1).or_insert((1, 0));
        }
        self.notifier.wake(recipients.iter().map(String::as_str), p);
        if self.to_device_sends.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000 == 999 {
            self.store.e2e_prune_to_device_txns(now - TXN_RETENTION_MS).await?;
        }
        Ok(())
    }

    /// The device's waiting messages for a `/sync` (see `Store::e2e_take_to_device`).
    pub(crate) async fn take_to_device(&self, session: &Session, since: Option<i64>, upto: i64) -> Result<Vec<Value>> {
        let key = (session.user_id.clone(), session.device_id.clone());
        let seen = self.to_device_seen.get(&key).map(|e| *e);
        if let Some((queued, empty_at)) = seen {
            if queued == empty_at {
                return Ok(vec![]);
            }
        }
        let rows = self
            .store
            .e2e_take_to_device(&session.user_id, &session.device_id, since, upto, MAX_TO_DEVICE_PER_SYNC)
            .await?;
        if rows.is_empty() {
            // Nothing waits: remember it, unless a message was queued meanwhile.
            let queued_at_read = seen.map_or(0, |(q, _)| q);
            self.to_device_seen
                .entry(key)
                .and_modify(|(q, e)| {
                    if *q == queued_at_read {
                        *e = *q;
                    }
                })
                .or_insert((0, 0));
        }
        Ok(rows
            .into_iter()
            .map(|(_, sender, kind, content)| {
                let content: Value = serde_json::from_str(&content).unwrap_or_else(|_| json!({}));
                json!({"sender": sender, "type": kind, "content": content})
            })
            .collect())
    }
}
