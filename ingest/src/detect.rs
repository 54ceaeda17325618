//! Content-type detection from magic bytes first, then the declared type, then the file name.
use crate::error::IngestError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentType {
    Pdf,
    Markdown,
    Html,
    Text,
}

impl ContentType {
    pub fn mime(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Markdown => "text/markdown",
            Self::Html => "text/html",
            Self::Text => "text/plain",
        }
    }

    /// Every MIME type (essence) a declared type may name, and what it means. The API document
    /// lists the same ones.
    pub const DECLARED: [(&'static str, Self); 7] = [
        ("text/plain", Self::Text),
        ("text/markdown", Self::Markdown),
        ("text/x-markdown", Self::Markdown),
        ("text/html", Self::Html),
        ("application/xhtml+xml", Self::Html),
        ("application/pdf", Self::Pdf),
        ("application/x-pdf", Self::Pdf),
    ];

    pub fn from_mime(mime: &str) -> Option<Self> {
        let essence = essence(mime);
        Self::DECLARED
            .iter()
            .find(|(m, _)| *m == essence)
            .map(|(_, t)| *t)
    }

    fn from_extension(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "pdf" => Some(Self::Pdf),
            "md" | "markdown" => Some(Self::Markdown),
            "html" | "htm" | "xhtml" => Some(Self::Html),
            "txt" | "text" | "rst" => Some(Self::Text),
            _ => None,
        }
    }
}

/// `Text/HTML; charset=utf-8` → `text/html`.
fn essence(mime: &str) -> String {
    mime.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Generic types that say nothing: fall through to the content and the file name.
fn is_generic(mime: &str) -> bool {
    matches!(
        essence(mime).as_str(),
        "" | "application/octet-stream" | "binary/octet-stream"
    )
}

/// Binary formats we recognise by signature but cannot ingest: refused rather than read as text.
const FOREIGN_MAGIC: &[&[u8]] = &[
    b"\x89PNG",
    b"\xFF\xD8\xFF",
    b"GIF8",
    b"PK\x03\x04",
    b"\x1F\x8B",
    b"\x7FELF",
    b"BZh",
    b"\xFD7zXZ",
    b"RIFF",
    b"\xD0\xCF\x11\xE0",
];

/// Decide a document's type. The bytes win over what the client claims: a PDF uploaded as
/// `text/plain` is parsed as PDF, and a PNG called `notes.txt` is refused.
pub fn detect(
    declared: Option<&str>,
    file_name: Option<&str>,
    bytes: &[u8],
) -> Result<ContentType, IngestError> {
    let head = &bytes[..bytes.len().min(1024)];
    if find(head, b"%PDF-").is_some() {
        return Ok(ContentType::Pdf);
    }
    if FOREIGN_MAGIC.iter().any(|m| bytes.starts_with(m)) {
        return Err(IngestError::Unsupported(
            "binary content (recognised file signature)".into(),
        ));
    }
    let declared_type = match declared.filter(|d| !is_generic(d)) {
        Some(d) => match ContentType::from_mime(d) {
            Some(ContentType::Pdf) => {
                return Err(IngestError::PdfCorrupt("no %PDF- header".into()))
            }
            Some(t) => Some(t),
            None => return Err(IngestError::Unsupported(d.to_string())),
        },
        None => None,
    };
    if let Some(t) = declared_type.or_else(|| file_name.and_then(ContentType::from_extension)) {
        if t == ContentType::Pdf {
            return Err(IngestError::PdfCorrupt("no %PDF- header".into()));
        }
        return Ok(t);
    }
    if looks_like_html(head) {
        return Ok(ContentType::Html);
    }
    Ok(ContentType::Text)
}

fn looks_like_html(head: &[u8]) -> bool {
    let s = String::from_utf8_lossy(head).to_ascii_lowercase();
    let s = s.trim_start_matches('\u{feff}').trim_start();
    s.starts_with("<!doctype html") || s.starts_with("<html") || s.contains("<body")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_beat_the_declared_type() {
        assert_eq!(
            detect(Some("text/plain"), Some("a.txt"), b"%PDF-1.4 ...").unwrap(),
            ContentType::Pdf
        );
        assert!(detect(Some("text/plain"), Some("a.txt"), b"\x89PNG\r\n\x1a\n").is_err());
    }

    #[test]
    fn declared_then_extension_then_sniffing() {
        assert_eq!(
            detect(Some("text/markdown"), None, b"# hi").unwrap(),
            ContentType::Markdown
        );
        assert_eq!(
            detect(None, Some("x.md"), b"# hi").unwrap(),
            ContentType::Markdown
        );
        assert_eq!(
            detect(None, None, b"<!DOCTYPE html><p>x").unwrap(),
            ContentType::Html
        );
        assert_eq!(
            detect(Some("application/octet-stream"), None, b"plain").unwrap(),
            ContentType::Text
        );
        assert_eq!(
            detect(Some("image/png"), None, b"whatever")
                .unwrap_err()
                .code(),
            crate::IngestErrorCode::UnsupportedMediaType
        );
    }
}
