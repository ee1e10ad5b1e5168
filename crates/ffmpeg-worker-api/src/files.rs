//! The files API (`/files`): a file just stored, and one file of a listing.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// A file just stored by `PUT /files/{path}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileResponse {
    /// Path relative to the data directory, in normal form.
    #[schema(example = "in/clip.mp4")]
    pub path: String,
    /// Size in bytes.
    #[schema(example = 1048576, format = Int64)]
    pub size_bytes: u64,
    /// SHA-256 of the content, lowercase hex.
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub sha256: String,
    /// Last modification (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub modified_at: OffsetDateTime,
    /// Content type from the extension (`application/octet-stream` when unknown).
    #[schema(example = "video/mp4")]
    pub content_type: String,
}

/// One file of `GET /files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileEntry {
    /// Path relative to the data directory.
    #[schema(example = "out/clip.webm")]
    pub path: String,
    /// Size in bytes.
    #[schema(example = 1048576, format = Int64)]
    pub size_bytes: u64,
    /// Last modification (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub modified_at: OffsetDateTime,
}
