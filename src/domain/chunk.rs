//! Types shared by the two retrieval legs.
use super::DocId;

/// A chunk as both legs store it. Everything a result needs is here, so no leg has to ask the
/// other one (or the catalog) for text.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChunk {
    pub doc_id: DocId,
    pub version: u64,
    pub ordinal: u32,
    pub title: String,
    pub text: String,
    pub content_type: String,
    pub page: Option<u32>,
    pub heading_path: Vec<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Byte offsets into the document's extracted text.
    pub start: u64,
    pub end: u64,
}

impl StoredChunk {
    /// Stable within a tenant; carries no global counter, so it reveals nothing about others.
    pub fn chunk_id(&self) -> String {
        format!("{}#{}-{}", self.doc_id, self.version, self.ordinal)
    }

    /// `key=value` terms for metadata filtering, identical in both legs.
    pub fn metadata_terms(&self) -> Vec<String> {
        metadata_terms(&self.metadata)
    }
}

/// What one indexed version occupies, counted when it commits (the tenant's `max_bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub chunks: u64,
    pub bytes: u64,
}

/// Fixed cost of one chunk beyond its variable fields in both legs (ids, version, offsets,
/// index entries), and of one document's catalog row beyond its title and metadata.
const CHUNK_OVERHEAD: u64 = 128;
const DOCUMENT_OVERHEAD: u64 = 256;

impl Footprint {
    /// The bytes `chunks` (one version of one document) occupy: the fields each leg keeps per
    /// chunk (text, heading path, filter terms in both; the title in the lexical index), the
    /// dense vector, and the document's own fields once, in the catalog. Results take the
    /// title, metadata and content type from the catalog, so neither leg stores them per chunk.
    pub fn of(chunks: &[StoredChunk], dim: usize) -> Self {
        // The document's fields are the same in every chunk of a version: measured once.
        let Some(first) = chunks.first() else {
            return Self::default();
        };
        let terms: usize = first.metadata_terms().iter().map(|t| t.len() + 3).sum();
        let metadata = serde_json::Value::Object(first.metadata.clone()).to_string();
        let per_chunk: u64 = chunks
            .iter()
            .map(|c| {
                let heading: usize = c.heading_path.iter().map(|h| h.len() + 3).sum();
                2 * (c.text.len() + heading + terms) as u64
                    + first.title.len() as u64
                    + 4 * dim as u64
                    + CHUNK_OVERHEAD
            })
            .sum();
        Self {
            chunks: chunks.len() as u64,
            bytes: per_chunk + (first.title.len() + metadata.len()) as u64 + DOCUMENT_OVERHEAD,
        }
    }
}

pub fn metadata_terms(m: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in m {
        match v {
            serde_json::Value::Array(items) => {
                out.extend(items.iter().filter_map(|i| scalar(i).map(|s| term(k, &s))))
            }
            other => out.extend(scalar(other).map(|s| term(k, &s))),
        }
    }
    out
}

/// Longest `key=value` term kept verbatim; longer ones are kept as a hash (see [`term`]).
pub const MAX_VERBATIM_TERM: usize = 64;

/// The filter term for `key=value`, as both legs index it per chunk and as filters match it. A
/// term longer than [`MAX_VERBATIM_TERM`] becomes `#` and 128 bits of its SHA-256: exact
/// matching is unchanged, and what a long metadata value costs per chunk is bounded (the value
/// itself is kept once per document, in the catalog).
pub fn term(key: &str, value: &str) -> String {
    use sha2::{Digest, Sha256};
    let t = format!("{key}={value}");
    if t.len() <= MAX_VERBATIM_TERM {
        return t;
    }
    let digest = Sha256::digest(t.as_bytes());
    format!("#{}", hex::encode(&digest[..16]))
}

/// The string form a metadata scalar is matched by (`true`, `3`, `text`).
pub fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Restricts both legs the same way. Empty lists mean "no restriction".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkFilter {
    /// Any of these documents.
    pub doc_ids: Vec<DocId>,
    /// Any of these MIME types.
    pub content_types: Vec<String>,
    /// All of these `key=value` metadata terms.
    pub metadata: Vec<String>,
}

/// A one-section plain-text chunk at version 1, for unit tests.
#[cfg(test)]
pub(crate) fn test_chunk(doc: &str, ordinal: u32, text: &str) -> StoredChunk {
    StoredChunk {
        doc_id: DocId::parse(doc).unwrap(),
        version: 1,
        ordinal,
        title: String::new(),
        text: text.to_string(),
        content_type: "text/plain".into(),
        page: None,
        heading_path: vec![],
        metadata: Default::default(),
        start: 0,
        end: text.len() as u64,
    }
}

/// A chunk's identity within a tenant: document, version, ordinal.
pub type ChunkKey = (DocId, u64, u32);

#[derive(Debug, Clone)]
pub struct LegHit {
    pub chunk: StoredChunk,
    pub score: f32,
}
