//! Orchestration left between `/sync`, filters and presence (being moved into their owners).
use serde_json::Value;

use crate::accounts::Session;
use crate::app::Services;
use crate::error::{MatrixError, Result};
use crate::presence::{DeviceKind, Presence};
use crate::sync::{SyncFilter, SyncRequest};

impl Services {
    pub async fn load_filter(&self, user_id: &str, filter_id: &str) -> Result<SyncFilter> {
        let id: i64 = filter_id.parse().map_err(|_| MatrixError::invalid_param("unknown filter id"))?;
        let json =
            self.store.get_filter(user_id, id).await?.ok_or_else(|| MatrixError::invalid_param("unknown filter id"))?;
        serde_json::from_str(&json).map_err(|e| MatrixError::bad_json(e.to_string()))
    }

    /// `/sync` with the device's automatic presence report around it.
    pub async fn sync_with_presence(
        &self,
        session: &Session,
        report: Presence,
        kind: Option<DeviceKind>,
        req: SyncRequest,
    ) -> Result<Value> {
        let in_flight = self.presence.sync_in_flight(session);
        self.presence.sync_started(session, report, kind).await;
        let result = self.sync.sync(session, req).await;
        in_flight.finish().await;
        crate::metrics::Metrics::inc(&self.metrics.sync_requests);
        if let Ok(v) = &result {
            self.metrics.count_deliveries(v);
        }
        result
    }

    /// The manual status (MSC3032): the engine's input; the profile room follows the engine.
    pub async fn set_manual_presence(
        &self,
        session: &Session,
        presence: Presence,
        status_msg: Option<String>,
    ) -> Result<()> {
        self.presence.set_manual(session, presence, status_msg).await
    }
}
