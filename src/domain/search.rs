//! The vocabulary of a search: modes, fusion methods and their bounds.

pub const MAX_TOP_K: usize = 100;
pub const MAX_QUERY_CHARS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Hybrid,
    Dense,
    Bm25,
}

/// How hybrid mode combines the legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FusionMethod {
    /// Weighted reciprocal rank fusion: `sum of w / (k + rank)`. Ignores how confident a leg is.
    #[default]
    Rrf,
    /// Distribution-based score fusion (as in Qdrant): each leg's scores are normalised by
    /// their own spread (mean ± 3 standard deviations over the candidates), then summed with
    /// the weights.
    Dbsf,
    /// Convex combination of theoretically min-max normalised scores (Bruch et al., 2023,
    /// "An Analysis of Fusion Functions for Hybrid Retrieval"): each leg is scaled from its
    /// lowest possible score (cosine -1, BM25 0) to the best candidate's score, then combined
    /// with the weights. A leg whose best match is weak contributes little.
    Convex,
}

/// Fusion settings; `None` fields take the configured defaults.
#[derive(Debug, Clone, Default)]
pub struct FusionOverrides {
    pub method: Option<FusionMethod>,
    pub rrf_k: Option<f32>,
    pub dense_weight: Option<f32>,
    pub bm25_weight: Option<f32>,
    pub candidates_per_leg: Option<usize>,
    /// Weight of a chunk's document opening in its dense score (see [`in_document_context`]).
    pub opening_weight: Option<f32>,
}
