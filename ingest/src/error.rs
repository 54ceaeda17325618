use thiserror::Error;

/// Stable, machine-readable reasons a document's ingestion fails. The string forms are part of
/// the HTTP API (job `error.code`) and must never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IngestErrorCode {
    UnsupportedMediaType,
    InvalidUtf8,
    EmptyDocument,
    PdfCorrupt,
    PdfNoText,
    ParserPanic,
    ParserCrashed,
    ParserTimeout,
    DocumentTooComplex,
    DecompressedTooLarge,
    JobTimeout,
    EmbeddingFailed,
}

impl IngestErrorCode {
    pub const ALL: [Self; 12] = [
        Self::UnsupportedMediaType,
        Self::InvalidUtf8,
        Self::EmptyDocument,
        Self::PdfCorrupt,
        Self::PdfNoText,
        Self::ParserPanic,
        Self::ParserCrashed,
        Self::ParserTimeout,
        Self::DocumentTooComplex,
        Self::DecompressedTooLarge,
        Self::JobTimeout,
        Self::EmbeddingFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::EmptyDocument => "empty_document",
            Self::PdfCorrupt => "pdf_corrupt",
            Self::PdfNoText => "pdf_no_text",
            Self::ParserPanic => "parser_panic",
            Self::ParserCrashed => "parser_crashed",
            Self::ParserTimeout => "parser_timeout",
            Self::DocumentTooComplex => "document_too_complex",
            Self::DecompressedTooLarge => "decompressed_too_large",
            Self::JobTimeout => "job_timeout",
            Self::EmbeddingFailed => "embedding_failed",
        }
    }

    /// True when the document itself is at fault (the user can fix it); false for our failures.
    pub fn is_user_fault(self) -> bool {
        !matches!(self, Self::EmbeddingFailed)
    }
}

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("unsupported content type: {0}")]
    Unsupported(String),
    #[error("document is not valid UTF-8 (invalid byte at offset {0})")]
    InvalidUtf8(usize),
    #[error("document contains no text")]
    Empty,
    #[error("PDF could not be parsed: {0}")]
    PdfCorrupt(String),
    #[error("PDF has no extractable text (scanned or image-only pages?)")]
    PdfNoText,
    #[error("the {0} parser crashed on this document")]
    ParserPanic(&'static str),
    /// The sandboxed parser process died (a signal, or an exit without an answer).
    #[error("the document parser crashed on this document ({0})")]
    ParserCrashed(String),
    #[error("parsing this document took longer than its {0} s budget")]
    ParserTimeout(u64),
    /// Nesting, cycles or memory beyond what a parser may spend on one document.
    #[error("document is too complex to parse: {0}")]
    TooComplex(String),
    #[error("document decompresses to more than {0} bytes")]
    DecompressedTooLarge(u64),
    /// The whole job (parse, chunk, embed, index) ran past its budget.
    #[error("ingesting this document took longer than its {0} s budget")]
    JobTimeout(u64),
    #[error("embedding failed: {0}")]
    Embedding(String),
    /// A failure the sandboxed worker reported, by its stable code.
    #[error("{message}")]
    Reported {
        code: IngestErrorCode,
        message: String,
    },
}

impl IngestError {
    pub fn code(&self) -> IngestErrorCode {
        match self {
            Self::Unsupported(_) => IngestErrorCode::UnsupportedMediaType,
            Self::InvalidUtf8(_) => IngestErrorCode::InvalidUtf8,
            Self::Empty => IngestErrorCode::EmptyDocument,
            Self::PdfCorrupt(_) => IngestErrorCode::PdfCorrupt,
            Self::PdfNoText => IngestErrorCode::PdfNoText,
            Self::ParserPanic(_) => IngestErrorCode::ParserPanic,
            Self::ParserCrashed(_) => IngestErrorCode::ParserCrashed,
            Self::ParserTimeout(_) => IngestErrorCode::ParserTimeout,
            Self::TooComplex(_) => IngestErrorCode::DocumentTooComplex,
            Self::DecompressedTooLarge(_) => IngestErrorCode::DecompressedTooLarge,
            Self::JobTimeout(_) => IngestErrorCode::JobTimeout,
            Self::Embedding(_) => IngestErrorCode::EmbeddingFailed,
            Self::Reported { code, .. } => *code,
        }
    }
}
