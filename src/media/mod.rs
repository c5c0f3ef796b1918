//! The media repository (spec "Content repository"): uploaded files are written to disk under
//! `media_path` (content/<2 chars>/<media id>), their metadata (uploader, content type, file
//! name, size) to the `media` table; thumbnails are made on first request and kept next to
//! them (thumbnails/<media id>/<size>-<method>).
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{MatrixError, Result};
use crate::rooms::event::{now_ms, random_string};
use crate::store::{MediaRow, Store};

mod thumbnail;

pub use thumbnail::{Method, THUMBNAIL_SIZES};

/// Longest file name kept with an upload, in bytes.
pub const MAX_FILENAME_BYTES: usize = 255;
/// Longest content type kept with an upload, in bytes.
pub const MAX_CONTENT_TYPE_BYTES: usize = 255;

pub struct MediaRepo {
    store: Store,
    dir: PathBuf,
    server_name: String,
    pub max_upload_bytes: usize,
}

/// A stored file: its metadata and bytes.
pub struct Content {
    pub meta: MediaRow,
    pub bytes: Vec<u8>,
}

impl MediaRepo {
    pub fn new(store: Store, dir: PathBuf, server_name: String, max_upload_bytes: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("content"))?;
        std::fs::create_dir_all(dir.join("thumbnails"))?;
        Ok(Self { store, dir, server_name, max_upload_bytes })
    }

    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Our media ids are 24 alphanumeric characters; anything else is not ours (and must
    /// never reach a file path).
    fn valid_id(media_id: &str) -> bool {
        !media_id.is_empty() && media_id.len() <= 64 && media_id.bytes().all(|b| b.is_ascii_alphanumeric())
    }

    fn content_path(&self, media_id: &str) -> PathBuf {
        self.dir.join("content").join(&media_id[..2]).join(media_id)
    }

    /// Store an upload durably (file synced to disk, then its row) and return its media id.
    pub async fn create(
        &self,
        uploader: &str,
        content_type: Option<String>,
        filename: Option<String>,
        bytes: Vec<u8>,
    ) -> Result<String> {
        if bytes.len() > self.max_upload_bytes {
            return Err(MatrixError::TooLarge(format!("Upload exceeds {} bytes", self.max_upload_bytes)));
        }
        if filename.as_ref().is_some_and(|f| f.len() > MAX_FILENAME_BYTES) {
            return Err(MatrixError::invalid_param("filename is too long"));
        }
        if content_type.as_ref().is_some_and(|c| c.len() > MAX_CONTENT_TYPE_BYTES) {
            return Err(MatrixError::invalid_param("Content-Type is too long"));
        }
        let media_id = random_string(24);
        let path = self.content_path(&media_id);
        let size = bytes.len() as i64;
        tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
            .await
            .map_err(|e| MatrixError::Internal(e.into()))?
            .map_err(|e| MatrixError::Internal(e.into()))?;
        let row = MediaRow {
            media_id: media_id.clone(),
            uploader: uploader.to_owned(),
            content_type,
            filename,
            size,
            created_ts: now_ms(),
        };
        self.store.insert_media(&row).await?;
        Ok(media_id)
    }

    /// Metadata of a local media id, 404 `M_NOT_FOUND` for remote servers and unknown ids.
    pub async fn meta(&self, server_name: &str, media_id: &str) -> Result<MediaRow> {
        if server_name != self.server_name || !Self::valid_id(media_id) {
            return Err(MatrixError::not_found("Media not found"));
        }
        self.store.get_media(media_id).await?.ok_or_else(|| MatrixError::not_found("Media not found"))
    }

    pub async fn get(&self, server_name: &str, media_id: &str) -> Result<Content> {
        let meta = self.meta(server_name, media_id).await?;
        let bytes = tokio::fs::read(self.content_path(media_id)).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => MatrixError::not_found("Media not found"),
            _ => MatrixError::Internal(e.into()),
        })?;
        Ok(Content { meta, bytes })
    }

    /// A thumbnail of at least `width` x `height` (snapped to one of [`THUMBNAIL_SIZES`]):
    /// (content type, bytes). Non-images answer 400 `M_UNKNOWN` as the spec says.
    pub async fn thumbnail(
        &self,
        server_name: &str,
        media_id: &str,
        width: u64,
        height: u64,
        method: Method,
    ) -> Result<(String, Vec<u8>)> {
        if width == 0 || height == 0 {
            return Err(MatrixError::invalid_param("width and height must be positive"));
        }
        let meta = self.meta(server_name, media_id).await?;
        let (w, h) = thumbnail::snap(width, height);
        let dir = self.dir.join("thumbnails").join(media_id);
        for (ext, ct) in [("png", "image/png"), ("jpg", "image/jpeg")] {
            let cached = dir.join(format!("{w}x{h}-{}.{ext}", method.as_str()));
            if let Ok(bytes) = tokio::fs::read(&cached).await {
                return Ok((ct.to_owned(), bytes));
            }
        }
        let source = self.content_path(&meta.media_id);
        let made = tokio::task::spawn_blocking(move || -> Result<(String, Vec<u8>)> {
            let bytes = std::fs::read(&source).map_err(|e| MatrixError::Internal(e.into()))?;
            let (ct, ext, out) = thumbnail::make(&bytes, w, h, method)?;
            let path = dir.join(format!("{w}x{h}-{}.{ext}", method.as_str()));
            write_durably(&path, &out).map_err(|e| MatrixError::Internal(e.into()))?;
            Ok((ct.to_owned(), out))
        })
        .await
        .map_err(|e| MatrixError::Internal(e.into()))??;
        Ok(made)
    }
}

/// Write to a temporary file, sync it, then rename into place: a reader never sees half a file
/// and a 200 means the bytes are on disk.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().expect("media paths have a parent");
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".tmp-{}", random_string(12)));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(())
}
