//! Media metadata: `media/meta/<media_id>.json`, pointing at a content-addressed blob.

use serde::{Deserialize, Serialize};

/// One local media item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaMeta {
    pub server_name: String,
    pub media_id: String,
    pub content_type: Option<String>,
    pub upload_name: Option<String>,
    pub uploader: Option<String>,
    pub created_ts: Option<i64>,
    pub length: u64,
    /// Hex sha256 of the bytes; the blob lives at `media/blobs/<sha[0..2]>/<sha>`.
    pub sha256: String,
    pub quarantined_by: Option<String>,
}
