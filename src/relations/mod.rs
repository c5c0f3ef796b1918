//! Event relationships (spec "Forming relationships between events"): every event whose
//! content has `m.relates_to` with an `event_id` and `rel_type` is indexed by its parent when
//! it is sent (encrypted events keep `m.relates_to` in clear, so they are indexed too), and
//! `/relations` pages through a parent's children.
use serde_json::Value;

use crate::error::Result;
use crate::rooms::Pdu;
use crate::store::{NewRelation, Store};

/// Most events one `/relations` page holds.
pub(crate) const MAX_RELATIONS_LIMIT: u64 = 100;
/// Relation types and event ids longer than this are not indexed.
const MAX_FIELD_BYTES: usize = 255;

pub struct Relations {
    store: Store,
}

/// (parent event id, relation type) of an event, if it has a relation.
pub(crate) fn relation_of(content: &Value) -> Option<(&str, &str)> {
    let rel = content.get("m.relates_to")?;
    let parent = rel.get("event_id")?.as_str()?;
    let rel_type = rel.get("rel_type")?.as_str()?;
    (parent.len() <= MAX_FIELD_BYTES && rel_type.len() <= MAX_FIELD_BYTES && !rel_type.is_empty())
        .then_some((parent, rel_type))
}

impl Relations {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }

    /// Index `pdu` if it relates to another event (idempotent: resent transactions are fine).
    pub(crate) async fn record(&self, pdu: &Pdu) -> Result<()> {
        let Some((parent, rel_type)) = relation_of(&pdu.content) else { return Ok(()) };
        let Some((pos, _)) = self.store.get_event(&pdu.event_id).await? else { return Ok(()) };
        self.store
            .insert_relation(&NewRelation {
                event_id: &pdu.event_id,
                room_id: &pdu.room_id,
                parent_id: parent,
                rel_type,
                event_type: &pdu.kind,
                pos,
            })
            .await?;
        Ok(())
    }

    /// One page of `parent`'s children readable up to `upto`, between the positions `from`
    /// and `to` (exclusive), newest first unless `forward`: (events, next position to page from).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn page(
        &self,
        room_id: &str,
        parent: &str,
        rel_type: Option<&str>,
        event_type: Option<&str>,
        from: Option<i64>,
        to: Option<i64>,
        forward: bool,
        limit: u64,
        upto: i64,
    ) -> Result<(Vec<Pdu>, Option<i64>)> {
        let limit = limit.clamp(1, MAX_RELATIONS_LIMIT) as i64;
        let (after, before) = if forward {
            (from.unwrap_or(0), to.map_or(upto.saturating_add(1), |t| t.min(upto.saturating_add(1))))
        } else {
            (to.unwrap_or(0), from.map_or(upto.saturating_add(1), |f| f.min(upto.saturating_add(1))))
        };
        let rows = self.store.relations(room_id, parent, rel_type, event_type, after, before, forward, limit).await?;
        let next = (rows.len() as i64 == limit).then(|| rows.last().map(|(_, p)| *p)).flatten();
        let mut events = Vec::with_capacity(rows.len());
        for (event_id, _) in rows {
            if let Some((_, pdu)) = self.store.get_event(&event_id).await? {
                events.push(pdu);
            }
        }
        Ok((events, next))
    }
}
