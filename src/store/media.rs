//! Media metadata (the bytes live on disk, see `media::MediaRepo`).
use super::Store;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MediaRow {
    pub media_id: String,
    pub uploader: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: i64,
    pub created_ts: i64,
}

impl Store {
    pub async fn insert_media(&self, m: &MediaRow) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO media (media_id, uploader, content_type, filename, size, created_ts) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&m.media_id)
        .bind(&m.uploader)
        .bind(&m.content_type)
        .bind(&m.filename)
        .bind(m.size)
        .bind(m.created_ts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_media(&self, media_id: &str) -> sqlx::Result<Option<MediaRow>> {
        sqlx::query_as(
            "SELECT media_id, uploader, content_type, filename, size, created_ts FROM media WHERE media_id = $1",
        )
        .bind(media_id)
        .fetch_optional(&self.pool)
        .await
    }
}
