//! One destination's worker: runs while the destination has something queued, sends one
//! transaction at a time, and waits out an exponential backoff after a failure. A slow or
//! dead peer only ever holds up its own worker.
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{Destination, MAX_EDUS_PER_TXN, MAX_PDUS_PER_TXN, TYPING_EDU_TTL};
use crate::federation::client::enc;
use crate::federation::Federation;

pub(super) async fn run(fed: Arc<Federation>, dest: Arc<Destination>) {
    let Ok(server) = ruma::OwnedServerName::try_from(dest.name.as_str()) else { return };
    loop {
        wait_for_retry(&dest).await;
        dest.state.lock().dirty = false;
        let pdus = match fed.store.fed_outbox_batch(&dest.name, MAX_PDUS_PER_TXN as i64).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(destination = %dest.name, error = %e, "could not read the federation queue");
                failed(&fed, &dest);
                continue;
            }
        };
        let edus = take_edus(&fed, &dest);
        if pdus.is_empty() && edus.is_empty() {
            let mut st = dest.state.lock();
            if st.dirty {
                continue;
            }
            st.running = false;
            return;
        }
        let pdus = within_bytes(pdus, MAX_TXN_PDU_BYTES);
        let last_seq = pdus.last().map(|p| p.0);
        let pdu_values: Vec<Value> = pdus.iter().filter_map(|(_, p)| serde_json::from_str(p).ok()).collect();
        let txn_id = fed.sender.next_txn_id();
        let body = json!({
            "origin": fed.server_name.as_str(),
            "origin_server_ts": crate::rooms::now_ms(),
            "pdus": pdu_values,
            "edus": edus,
        });
        let path = format!("/_matrix/federation/v1/send/{}", enc(&txn_id));
        let (n_pdus, n_edus) = (pdu_values.len() as u64, edus.len() as u64);
        // The same transaction (same id, same content) until the peer takes or refuses it.
        loop {
            let outcome = fed.send(&server, Method::PUT, &path, Some(&body), true).await;
            let m = &fed.metrics.federation;
            let status = match &outcome {
                Ok(r) => Some(r.status),
                Err(_) => None,
            };
            if status.is_some_and(|s| s.is_success() || permanent(s)) {
                if let Some(seq) = last_seq {
                    if let Err(e) = fed.store.fed_outbox_delete(&dest.name, seq).await {
                        tracing::warn!(destination = %dest.name, error = %e, "could not dequeue sent PDUs");
                    }
                }
                let was_failing = {
                    let mut st = dest.state.lock();
                    let was = st.failures > 0;
                    st.failures = 0;
                    st.retry_at = None;
                    was
                };
                if was_failing {
                    fed.peer_came_back(&dest.name);
                }
                let ok = status.is_some_and(|s| s.is_success());
                let counter = if ok { &m.sent } else { &m.failed };
                counter.with_label_values(&["pdu"]).inc_by(n_pdus);
                counter.with_label_values(&["edu"]).inc_by(n_edus);
                m.transactions.with_label_values(&[if ok { "sent" } else { "rejected" }]).inc();
                if !ok {
                    tracing::warn!(destination = %dest.name, status = ?status, %txn_id, "transaction refused; dropped");
                }
                break;
            }
            m.transactions.with_label_values(&["retry"]).inc();
            match outcome {
                Ok(r) => {
                    tracing::info!(destination = %dest.name, status = %r.status, %txn_id, "transaction failed; will retry")
                }
                Err(e) => {
                    tracing::info!(destination = %dest.name, error = %format!("{e:#}"), %txn_id, "transaction failed; will retry")
                }
            }
            failed(&fed, &dest);
            wait_for_retry(&dest).await;
        }
    }
}

/// PDU bytes per transaction: peers (Seed's default `max_request_bytes` among them) take
/// about 1 MiB bodies; the rest goes in the next transaction.
const MAX_TXN_PDU_BYTES: usize = 900 * 1024;

/// The longest prefix of `pdus` within `limit` bytes (at least one PDU).
fn within_bytes(mut pdus: Vec<(i64, String)>, limit: usize) -> Vec<(i64, String)> {
    let mut total = 0;
    let keep = pdus
        .iter()
        .position(|(_, p)| {
            total += p.len();
            total > limit
        })
        .unwrap_or(pdus.len())
        .max(1);
    pdus.truncate(keep);
    pdus
}

/// Answers that retrying the same transaction cannot change.
fn permanent(s: StatusCode) -> bool {
    matches!(s.as_u16(), 400 | 403 | 404 | 405 | 413 | 414)
}

/// Schedule the next attempt: `base * 2^(failures - 1)`, at most `max`.
fn failed(fed: &Federation, dest: &Destination) {
    let mut st = dest.state.lock();
    st.failures = st.failures.saturating_add(1);
    let delay = backoff(fed.config.send_backoff_base_ms, fed.config.send_backoff_max_ms, st.failures);
    st.retry_at = Some(tokio::time::Instant::now() + delay);
}

pub(crate) fn backoff(base_ms: u64, max_ms: u64, failures: u32) -> Duration {
    let factor = 1u64.checked_shl(failures.saturating_sub(1).min(40)).unwrap_or(u64::MAX);
    Duration::from_millis(base_ms.max(1).saturating_mul(factor).min(max_ms.max(1)))
}

/// Sleep until the destination's retry time, or until the peer is heard from.
async fn wait_for_retry(dest: &Destination) {
    let Some(at) = dest.state.lock().retry_at else { return };
    tokio::select! {
        _ = tokio::time::sleep_until(at) => {}
        _ = dest.peer_up.notified() => {}
    }
}

/// Up to [`MAX_EDUS_PER_TXN`] queued EDUs, oldest first, without stale typing notifications.
fn take_edus(fed: &Federation, dest: &Destination) -> Vec<Value> {
    let mut st = dest.state.lock();
    let mut out = Vec::new();
    let mut stale = 0;
    while out.len() < MAX_EDUS_PER_TXN {
        let Some(e) = st.edus.pop_front() else { break };
        if e.typing_key.is_some() && e.queued.elapsed() > TYPING_EDU_TTL {
            stale += 1;
            continue;
        }
        out.push(e.edu);
    }
    if stale > 0 {
        fed.metrics.federation.failed.with_label_values(&["edu"]).inc_by(stale);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max() {
        assert_eq!(backoff(100, 1_000, 1), Duration::from_millis(100));
        assert_eq!(backoff(100, 1_000, 2), Duration::from_millis(200));
        assert_eq!(backoff(100, 1_000, 4), Duration::from_millis(800));
        assert_eq!(backoff(100, 1_000, 5), Duration::from_millis(1_000));
        assert_eq!(backoff(100, 1_000, u32::MAX), Duration::from_millis(1_000));
    }

    #[test]
    fn refusals_that_a_retry_cannot_change_are_permanent() {
        assert!(permanent(StatusCode::BAD_REQUEST));
        assert!(!permanent(StatusCode::TOO_MANY_REQUESTS));
        assert!(!permanent(StatusCode::UNAUTHORIZED));
        assert!(!permanent(StatusCode::INTERNAL_SERVER_ERROR));
    }
}
