//! Per-tenant limits: token-bucket rate limits (queries and ingestion separately) and storage
//! quotas. Defaults come from `[limits]`; the admin API stores per-tenant overrides.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::LimitsConfig;
use crate::domain::TenantId;
use crate::storage::catalog::Quota;

/// A tenant's overrides as stored; absent fields take the configured default. 0 = unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_documents: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_chunks: Option<u64>,
}

/// Largest token-bucket burst a tenant may be given (the API document states it too).
pub const MAX_BURST: u32 = 1_000_000;

impl TenantLimits {
    pub fn validate(&self) -> Result<(), String> {
        for r in [self.query_per_sec, self.ingest_per_sec]
            .into_iter()
            .flatten()
        {
            if !(r.is_finite() && r >= 0.0) {
                return Err("rates must be finite and >= 0".into());
            }
        }
        if [self.query_burst, self.ingest_burst]
            .into_iter()
            .flatten()
            .any(|b| b > MAX_BURST)
        {
            return Err(format!("bursts must be at most {MAX_BURST}"));
        }
        if [self.max_documents, self.max_bytes, self.max_chunks]
            .into_iter()
            .flatten()
            .any(|q| q > i64::MAX as u64)
        {
            return Err(format!("quotas must be at most {}", i64::MAX));
        }
        Ok(())
    }
}

/// The limits in force for one tenant: the configured defaults' shape, with the tenant's
/// overrides applied. 0 = unlimited.
pub type Limits = LimitsConfig;

impl LimitsConfig {
    pub fn resolve(d: &LimitsConfig, o: &TenantLimits) -> Self {
        Self {
            query_per_sec: o.query_per_sec.unwrap_or(d.query_per_sec),
            query_burst: o.query_burst.unwrap_or(d.query_burst),
            ingest_per_sec: o.ingest_per_sec.unwrap_or(d.ingest_per_sec),
            ingest_burst: o.ingest_burst.unwrap_or(d.ingest_burst),
            max_documents: o.max_documents.unwrap_or(d.max_documents),
            max_bytes: o.max_bytes.unwrap_or(d.max_bytes),
            max_chunks: o.max_chunks.unwrap_or(d.max_chunks),
        }
    }

    pub fn quota(&self) -> Quota {
        Quota {
            max_documents: nonzero(self.max_documents),
            max_bytes: nonzero(self.max_bytes),
            max_chunks: nonzero(self.max_chunks),
        }
    }
}

fn nonzero(n: u64) -> Option<u64> {
    (n > 0).then_some(n)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `/v1/query` and `/v1/answer`.
    Query,
    /// Document uploads.
    Ingest,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// How long a node trusts the limits it read: a change made through another node applies here
/// within this time.
pub const LIMITS_TTL: Duration = Duration::from_secs(10);

/// Token buckets per (tenant, class), and the cache of each tenant's resolved limits.
///
/// With several nodes, each node's buckets hold its share of the tenant's rate and burst (1/N
/// of each, N the nodes alive by the heartbeat): no request crosses nodes to be admitted. A
/// balancer that spreads a tenant's requests evenly admits the configured rate; one that sends
/// them all to one node admits 1/N of it. When a node joins, the others keep their larger
/// share until their next heartbeat (2 s): the deployment may admit up to N/(N-1) times the
/// rate, plus one extra burst, for that long.
pub struct RateLimiter {
    buckets: Mutex<HashMap<(TenantId, Class), Bucket>>,
    resolved: Mutex<HashMap<TenantId, (Limits, Instant)>>,
    nodes: std::sync::atomic::AtomicUsize,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            buckets: Mutex::default(),
            resolved: Mutex::default(),
            nodes: std::sync::atomic::AtomicUsize::new(1),
        }
    }
}

impl RateLimiter {
    pub fn cached(&self, tenant: &TenantId) -> Option<Limits> {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .filter(|(_, at)| at.elapsed() < LIMITS_TTL)
            .map(|(l, _)| *l)
    }

    pub fn remember(&self, tenant: &TenantId, limits: Limits) {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.clone(), (limits, Instant::now()));
    }

    /// Nodes that share the deployment's rate limits (at least 1).
    pub fn set_nodes(&self, n: usize) {
        self.nodes
            .store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn forget(&self, tenant: &TenantId) {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(t, _), _| t != tenant);
    }

    /// Take one token, or say in how many whole seconds one will be there.
    pub fn take(&self, tenant: &TenantId, class: Class, limits: &Limits) -> Result<(), u64> {
        let (rate, burst) = match class {
            Class::Query => (limits.query_per_sec, limits.query_burst),
            Class::Ingest => (limits.ingest_per_sec, limits.ingest_burst),
        };
        if rate <= 0.0 {
            return Ok(());
        }
        let share = self.nodes.load(std::sync::atomic::Ordering::Relaxed).max(1) as f64;
        let rate = rate / share;
        let burst = (f64::from(burst.max(1)) / share).ceil();
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry((tenant.clone(), class)).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// At most `per_tenant` of something running per tenant and `total` in all (export streams).
/// `try_acquire` never waits: a caller over the cap is told to come back.
pub struct ConcurrencyCap {
    per_tenant: usize,
    total: usize,
    running: Mutex<HashMap<TenantId, usize>>,
}

/// Held while the capped work runs; dropping it frees the slot.
pub struct CapPermit {
    cap: std::sync::Arc<ConcurrencyCap>,
    tenant: TenantId,
}

impl ConcurrencyCap {
    pub fn new(per_tenant: usize, total: usize) -> Self {
        Self {
            per_tenant: per_tenant.max(1),
            total: total.max(1),
            running: Mutex::new(HashMap::new()),
        }
    }

    pub fn try_acquire(self: &std::sync::Arc<Self>, tenant: &TenantId) -> Option<CapPermit> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let all: usize = running.values().sum();
        let mine = running.get(tenant).copied().unwrap_or(0);
        if all >= self.total || mine >= self.per_tenant {
            return None;
        }
        *running.entry(tenant.clone()).or_default() += 1;
        Some(CapPermit {
            cap: self.clone(),
            tenant: tenant.clone(),
        })
    }
}

impl Drop for CapPermit {
    fn drop(&mut self) {
        let mut running = self.cap.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = running.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: f64, burst: u32) -> Limits {
        Limits {
            query_per_sec: rate,
            query_burst: burst,
            ingest_per_sec: 0.0,
            ingest_burst: 0,
            max_documents: 0,
            max_bytes: 0,
            max_chunks: 0,
        }
    }

    #[test]
    fn bucket_allows_the_burst_then_refuses_with_a_wait() {
        let rl = RateLimiter::default();
        let t = TenantId::parse("a").unwrap();
        let l = limits(0.5, 3);
        for _ in 0..3 {
            assert!(rl.take(&t, Class::Query, &l).is_ok());
        }
        // Empty bucket at 0.5 tokens/s: the next token is two seconds away.
        assert_eq!(rl.take(&t, Class::Query, &l), Err(2));
        // Other classes and tenants have their own buckets; rate 0 is unlimited.
        assert!(rl.take(&t, Class::Ingest, &l).is_ok());
        let u = TenantId::parse("b").unwrap();
        assert!(rl.take(&u, Class::Query, &l).is_ok());
    }

    #[test]
    fn concurrency_cap_per_tenant_and_in_all() {
        let cap = std::sync::Arc::new(ConcurrencyCap::new(1, 2));
        let (a, b, c) = (
            TenantId::parse("a").unwrap(),
            TenantId::parse("b").unwrap(),
            TenantId::parse("c").unwrap(),
        );
        let pa = cap.try_acquire(&a).unwrap();
        assert!(cap.try_acquire(&a).is_none(), "one per tenant");
        let _pb = cap.try_acquire(&b).unwrap();
        assert!(cap.try_acquire(&c).is_none(), "two in all");
        drop(pa);
        assert!(cap.try_acquire(&c).is_some());
    }
}
