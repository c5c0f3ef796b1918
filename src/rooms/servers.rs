//! Which servers take part in a room: the server names of its joined members (spec
//! "Room membership": a server is in the room while one of its users is joined).
use super::Rooms;

impl Rooms {
    /// The servers with at least one joined member, this server included; empty for an
    /// unknown room.
    pub async fn servers_in_room(&self, room_id: &str) -> Vec<String> {
        let Ok(state) = self.state(room_id).await else { return Vec::new() };
        let mut servers: Vec<String> = state
            .members_with(&["join"])
            .filter_map(|u| ruma::UserId::parse(u).ok().map(|u| u.server_name().to_string()))
            .collect();
        servers.sort();
        servers.dedup();
        servers
    }
}
