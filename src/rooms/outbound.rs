//! Local events leaving this server: a room event goes, as the PDU we signed, to every
//! other server with a joined member (and to a kicked or banned user's server), through the
//! outgoing queue of `Federation`.
use std::collections::BTreeSet;
use std::sync::Arc;

use super::dag;
use super::event::Pdu;
use super::service::Rooms;
use super::state::RoomState;

/// The server part of a user id (`None` if malformed).
pub(crate) fn server_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, s)| s)
}

/// Servers with joined members in `state`, except `ours`, sorted.
pub(crate) fn servers_of(state: &RoomState, ours: &str) -> Vec<String> {
    let set: BTreeSet<&str> = state.members_with(&["join"]).filter_map(server_of).filter(|s| *s != ours).collect();
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

    /// Does `server` have a joined member in the room, or a peek of it (MSC2444: a peeking
    /// server may read the DAG of the room it peeks)?
    pub(crate) async fn server_in_room(&self, server: &str, room_id: &str) -> bool {
        match self.state(room_id).await {
            Ok(state) => {
                state.members_with(&["join"]).any(|u| server_of(u) == Some(server))
                    || self.links.get().is_some_and(|l| l.peeks.server_peeks(server, room_id))
            }
            Err(_) => false,
        }
    }

    /// Add the servers peeking `room_id` to `destinations` (deduplicated).
    fn add_peeking_servers(&self, room_id: &str, destinations: &mut Vec<String>) {
        let Some(links) = self.links.get() else { return };
        for server in links.peeks.peeking_servers(room_id) {
            if !destinations.contains(&server) {
                destinations.push(server);
            }
        }
    }

    /// An event another server sent us in a room we are resident in: relay it to the servers
    /// peeking the room (MSC2444: the peeked server relays *all* events it sees), except the
    /// one it came from.
    pub(crate) fn relay_to_peekers(&self, pdu: &Arc<Pdu>, state: &RoomState, origin: &str) {
        let mut destinations = Vec::new();
        self.add_peeking_servers(&pdu.room_id, &mut destinations);
        destinations.retain(|d| d != origin && server_of(&pdu.sender) != Some(d.as_str()));
        if destinations.is_empty() || !self.federation.enabled() {
            return;
        }
        let version = dag::room_version(state, None);
        match self.signed_pdu(pdu, &version).map(serde_json::to_value) {
            Ok(Ok(json)) => self.federation.send_pdu(destinations, &pdu.event_id, &json),
            _ => tracing::warn!(event_id = %pdu.event_id, "PDU not relayed to peeking servers"),
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
        // Servers peeking the room (MSC2444) get its events as if they were joined.
        self.add_peeking_servers(&pdu.room_id, &mut destinations);
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
        let json = match self.signed_pdu(pdu, &version).map(serde_json::to_value) {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return tracing::warn!(event_id = %pdu.event_id, error = %e, "PDU not sent"),
            Err(e) => return tracing::warn!(event_id = %pdu.event_id, error = %e, "PDU not sent"),
        };
        // The transport's persisted queue per destination (`federation::sender`).
        self.federation.send_pdu(destinations, &pdu.event_id, &json);
    }
}
