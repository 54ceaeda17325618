//! Types shared by the two retrieval legs.
use crate::tenant::DocId;

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

pub fn term(key: &str, value: &str) -> String {
    format!("{key}={value}")
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
