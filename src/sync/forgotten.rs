//! Forgotten rooms (spec `POST /rooms/{roomId}/forget`): a room the user left and then
//! forgot no longer appears in their `/sync`. A later membership change makes the forget
//! stale, so rejoining brings the room back.
use std::sync::Arc;

use crate::error::{MatrixError, Result};
use crate::rooms::Rooms;
use crate::store::Store;

pub struct ForgottenRooms {
    store: Store,
    rooms: Arc<Rooms>,
}

impl ForgottenRooms {
    pub fn new(store: Store, rooms: Arc<Rooms>) -> Self {
        Self { store, rooms }
    }

    /// Forget a room the user has left (or was kicked or banned from); 400 while the user is
    /// joined, invited or knocking. A user who never had a membership has nothing to forget.
    pub async fn forget(&self, user_id: &str, room_id: &str) -> Result<()> {
        self.rooms.state(room_id).await?;
        let membership = self.rooms.memberships(user_id).await?.iter().find(|(r, _, _)| r == room_id).cloned();
        match membership {
            None => Ok(()),
            Some((_, m, pos)) if m == "leave" || m == "ban" => {
                Ok(self.store.forget_room(user_id, room_id, pos).await?)
            }
            Some(_) => Err(MatrixError::Unknown("You must leave the room before forgetting it".into())),
        }
    }

    /// Rooms the user forgot whose membership is still the one they forgot at.
    pub async fn forgotten(&self, user_id: &str) -> Result<Vec<String>> {
        let memberships = self.rooms.memberships(user_id).await?;
        let rows = self.store.forgotten_rooms(user_id).await?;
        Ok(rows
            .into_iter()
            .filter(|(room, at)| memberships.iter().any(|(r, _, pos)| r == room && pos == at))
            .map(|(room, _)| room)
            .collect())
    }
}
