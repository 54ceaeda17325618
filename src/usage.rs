//! Usage metering: counters per tenant and UTC day, kept in memory and added to the catalog in
//! one transaction every maintenance period, on shutdown and before every read. Counters only:
//! there is no field that could hold document, query or answer text.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::domain::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Queries,
    Answers,
    DocumentsIngested,
    ChunksIngested,
    /// Tokens run through the embedding model (ingestion and queries; cache hits excluded).
    EmbeddingTokens,
    /// Prompt and completion tokens of LLM generators, counted with the embedding tokenizer.
    GeneratorTokens,
    /// Error responses, by stable API code.
    Error(&'static str),
}

impl Metric {
    pub fn name(self) -> String {
        match self {
            Self::Queries => "queries".into(),
            Self::Answers => "answers".into(),
            Self::DocumentsIngested => "documents_ingested".into(),
            Self::ChunksIngested => "chunks_ingested".into(),
            Self::EmbeddingTokens => "embedding_tokens".into(),
            Self::GeneratorTokens => "generator_tokens".into(),
            Self::Error(code) => format!("errors.{code}"),
        }
    }
}

#[derive(Default)]
pub struct Meter {
    pending: Mutex<HashMap<(TenantId, String, String), u64>>,
}

impl Meter {
    pub fn add(&self, tenant: &TenantId, metric: Metric, n: u64) {
        if n == 0 {
            return;
        }
        *self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((tenant.clone(), today(), metric.name()))
            .or_default() += n;
    }

    /// Everything counted since the last call, as catalog rows.
    pub fn take(&self) -> Vec<(TenantId, String, String, u64)> {
        let drained = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        drained
            .into_iter()
            .map(|((t, day, m), v)| (t, day, m, v))
            .collect()
    }

    /// Put rows back after a failed write, so nothing counted is lost.
    pub fn restore(&self, rows: Vec<(TenantId, String, String, u64)>) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (t, day, name, v) in rows {
            *p.entry((t, day, name)).or_default() += v;
        }
    }

    pub fn forget(&self, tenant: &TenantId) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(t, _, _), _| t != tenant);
    }
}

/// Today's UTC date as `YYYY-MM-DD`.
pub fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    civil_date((secs / 86_400) as i64)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The inverse of [`civil_date`]; `None` unless `s` is `YYYY-MM-DD`.
pub fn days_since_epoch(s: &str) -> Option<i64> {
    if !is_day(s) {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (
        s[..4].parse().ok()?,
        s[5..7].parse().ok()?,
        s[8..].parse().ok()?,
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Is `s` a `YYYY-MM-DD` date?
pub fn is_day(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(20_779), "2026-11-22");
        assert!(is_day("2026-11-22") && !is_day("2026-1-22") && !is_day("x"));
        for d in [0, 11_016, 20_779, 20_779 - 30] {
            assert_eq!(days_since_epoch(&civil_date(d)), Some(d));
        }
    }

    #[test]
    fn meter_round_trips_through_rows() {
        let m = Meter::default();
        let t = TenantId::parse("a").unwrap();
        m.add(&t, Metric::Queries, 2);
        m.add(&t, Metric::Error("rate_limited"), 1);
        let rows = m.take();
        assert_eq!(rows.len(), 2);
        assert!(m.take().is_empty());
        m.restore(rows);
        assert_eq!(m.take().len(), 2);
    }
}
