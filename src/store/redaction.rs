//! Redactions rewrite the stored event in place (spec "Redactions").
use super::Store;

impl Store {
    /// Replace the stored JSON of an event with its redacted form.
    pub(crate) async fn replace_event_json(&self, event_id: &str, json: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE events SET json = $1 WHERE event_id = $2")
            .bind(json)
            .bind(event_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
