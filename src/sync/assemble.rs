//! Assembly of a `/sync` response: every section built from the same [`SyncContext`], then
//! put together here in one visible function. Sections never see each other's output; the
//! rules that relate them (forgotten rooms, peeks turning into joins, privacy masks) are the
//! explicit steps below.
use super::response::{JoinedRoom, PresenceEvents, Rooms, SyncResponse};
use super::sections::account_data::account_data_section;
use super::sections::e2ee::e2ee_section;
use super::sections::ephemeral::ephemeral_section;
use super::sections::peek::peek_section;
use super::sections::presence::{presence_section, PresenceSource};
use super::sections::rooms::membership_rooms;
use super::sections::{synced_joined_rooms, SyncContext};
use super::SyncService;
use crate::error::{MatrixError, Result};
use crate::ground::token;
use crate::profile::privacy::ProfileMask;

impl SyncService {
    /// The response for `ctx`, and whether it carries anything new (a long-poll with nothing
    /// new keeps waiting).
    pub(super) async fn assemble(&self, ctx: &SyncContext<'_>) -> Result<(SyncResponse, bool)> {
        // A restart brings every client's first sync at once: they queue here, a few built
        // at a time, instead of all sharing the cores and the memory and all finishing late.
        // The semaphore is never closed, so waiting cannot fail.
        let _permit = match ctx.since {
            None => Some(self.initial_syncs.acquire().await.map_err(|e| MatrixError::Internal(e.into()))?),
            Some(_) => None,
        };
        let user = ctx.user_id();
        let membership = membership_rooms(&self.rooms, ctx).await?;
        let joined = synced_joined_rooms(&self.rooms, ctx).await?;
        let account_data = account_data_section(&self.account_data, ctx, &joined).await?;
        let ephemeral = ephemeral_section(&self.ephemeral, ctx, &joined).await?;
        let peek = peek_section(&self.peeks, &self.rooms, ctx).await?;
        let presence = presence_section(
            &PresenceSource {
                engine: &self.presence,
                accounts: &self.accounts,
                rooms: &self.rooms,
                busy_as: self.legacy_presence.busy_as,
                initial_sync_offline: self.legacy_presence.initial_sync_offline,
            },
            ctx,
        )
        .await?;
        let e2ee = e2ee_section(&self.e2ee, ctx).await?;

        // A forgotten membership still counts as news (as it always has); it is only left
        // out of what is shown.
        let has_content = !membership.is_empty()
            || !account_data.is_empty()
            || !ephemeral.is_empty()
            || peek.has_news()
            || !presence.is_empty()
            || e2ee.has_news();

        let mut rooms =
            Rooms { join: membership.join, invite: membership.invite, leave: membership.leave, ..Default::default() };
        // A joined room with only ephemeral events or account data still gets an entry.
        for (room_id, events) in ephemeral {
            rooms.join.entry(room_id).or_insert_with(|| JoinedRoom::empty(ctx.upto)).ephemeral.events.extend(events);
        }
        for (room_id, events) in account_data.rooms {
            rooms.join.entry(room_id).or_insert_with(|| JoinedRoom::empty(ctx.upto)).account_data.events.extend(events);
        }
        // Forgotten rooms leave `rooms.leave` (asked only when there is one: most syncs have
        // none); a peek that ended is reported there regardless.
        if !rooms.leave.is_empty() {
            for room_id in self.forgotten.forgotten(user).await? {
                rooms.leave.remove(&room_id);
            }
        }
        rooms.leave.extend(peek.left);
        // A device that was peeking a room it joined continues from `since` (MSC2753).
        for (room_id, (timeline, state)) in peek.continued_joins {
            if let Some(entry) = rooms.join.get_mut(&room_id) {
                entry.timeline = timeline;
                entry.state = state;
            }
        }
        rooms.peek = peek.peek;
        self.mask_profile_rooms(user, &mut rooms).await?;

        let response = SyncResponse {
            next_batch: token::sync_token(ctx.upto),
            rooms,
            presence: PresenceEvents { events: presence },
            account_data: account_data.global.into(),
            to_device: e2ee.to_device.into(),
            device_lists: e2ee.device_lists.unwrap_or_default(),
            device_one_time_keys_count: e2ee.one_time_keys_count.into(),
            device_unused_fallback_key_types: e2ee.unused_fallback_key_types.clone(),
            unstable_unused_fallback_key_types: e2ee.unused_fallback_key_types,
        };
        Ok((response, has_content))
    }

    /// MSC3032 privacy: what `viewer` may not see of profile rooms' timelines and state
    /// (hidden users' `m.status` text, restricted presence), in every room section.
    async fn mask_profile_rooms(&self, viewer: &str, rooms: &mut Rooms) -> Result<()> {
        let profiles = &self.profiles;
        let sections = rooms
            .join
            .iter_mut()
            .map(|(id, r)| (id, [&mut r.timeline.events, &mut r.state.events]))
            .chain(rooms.leave.iter_mut().map(|(id, r)| (id, [&mut r.timeline.events, &mut r.state.events])))
            .chain(rooms.peek.iter_mut().map(|(id, r)| (id, [&mut r.timeline.events, &mut r.state.events])));
        for (room_id, lists) in sections {
            // Also profile rooms of other servers (peeked over federation): `mask_for` reads
            // their owner from the room state (an in-memory lookup).
            let mask: ProfileMask = profiles.mask_for(room_id, viewer).await?;
            for events in lists {
                mask.apply_all(events);
            }
        }
        Ok(())
    }
}
