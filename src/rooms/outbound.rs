//! Local events leaving this server: a room event goes, as the PDU we signed, to every
//! other server with a joined member (and to a kicked or banned user's server).
use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use super::dag;
use super::event::Pdu;
use super::service::Rooms;
use super::state::RoomState;
use crate::federation::pdu;

/// The server part of a user id (`None` if malformed).
pub(crate) fn server_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, s)| s)
}

/// Servers with joined members in `state`, except `ours`, sorted.
pub(crate) fn servers_of(state: &RoomState, ours: &str) -> Vec<String> {
    let set: BTreeSet<&str> =
        state.members_with(&["join"]).filter_map(server_of).filter(|s| *s != ours).collect();
    set.into_iter().map(str::to_owned).collect()
}

impl Rooms {
    /// The other servers with joined members in a room (for PDUs and EDUs).
    pub async fn servers_in_room(&self, room_id: &str) -> Vec<String> {
        match self.state(room_id).await {
            Ok(state) => servers_of(&state, &self.server_name),
            Err(_) => Vec::new(),
        }
    }

    /// Does `server` have a joined member in the room (may it read the room's DAG)?
    pub(crate) async fn server_in_room(&self, server: &str, room_id: &str) -> bool {
        match self.state(room_id).await {
            Ok(state) => state.members_with(&["join"]).any(|u| server_of(u) == Some(server)),
            Err(_) => false,
        }
    }

    /// Hand a just-persisted local event to the transport for the other servers of the
    /// room (`state`: the room state after it). Nothing to do with federation off.
    pub(super) fn fan_out(&self, pdu: &Arc<Pdu>, state: &RoomState) {
        self.fan_out_except(pdu, state, None)
    }

    /// [`Rooms::fan_out`] leaving out `skip` (the server an event came from).
    pub(super) fn fan_out_except(&self, pdu: &Arc<Pdu>, state: &RoomState, skip: Option<&str>) {
        if !self.federation.enabled() {
            return;
        }
        let mut destinations = servers_of(state, &self.server_name);
        destinations.retain(|d| Some(d.as_str()) != skip);
        if let (Some(target), Some("leave" | "ban")) = (&pdu.state_key, pdu.membership()) {
            if let Some(server) = server_of(target).filter(|s| *s != self.server_name) {
                if !destinations.iter().any(|d| d == server) {
                    destinations.push(server.to_owned());
                }
            }
        }
        if destinations.is_empty() {
            return;
        }
        let version = dag::room_version(state, None);
        let json = match pdu::signed_json(pdu, &version).map(|o| serde_json::to_value(o)) {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return tracing::warn!(event_id = %pdu.event_id, error = %e, "PDU not sent"),
            Err(e) => return tracing::warn!(event_id = %pdu.event_id, error = %e, "PDU not sent"),
        };
        let federation = self.federation.clone();
        tokio::spawn(async move { send_pdu(&federation, destinations, json).await });
    }
}

/// One `PUT /send/{txnId}` per destination, now (no queue, no retry): the stand-in for the
/// persisted per-destination queue of the transport (branch h/fed-send), replaced at merge.
async fn send_pdu(federation: &crate::federation::Federation, destinations: Vec<String>, pdu: Value) {
    for dest in destinations {
        let Ok(name) = <&ruma::ServerName>::try_from(dest.as_str()) else { continue };
        let txn = super::event::random_string(16);
        let body = serde_json::json!({
            "origin": federation.server_name, "origin_server_ts": super::event::now_ms(),
            "pdus": [pdu], "edus": [],
        });
        let path = format!("/_matrix/federation/v1/send/{txn}");
        match federation.send(name, http::Method::PUT, &path, Some(&body), true).await {
            Ok(r) if r.status.is_success() => {}
            Ok(r) => tracing::info!(%dest, status = %r.status, body = %r.body, "transaction refused"),
            Err(e) => tracing::info!(%dest, error = %format!("{e:#}"), "transaction not delivered"),
        }
    }
}
