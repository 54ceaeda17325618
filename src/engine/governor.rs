//! Limits and usage: per-tenant limits (configured defaults under stored overrides), the token
//! buckets that admit requests, the usage meter and the Prometheus metrics. The engine delegates
//! here; nothing here knows documents or retrieval.
use std::sync::Arc;
use std::time::Duration;

use crate::config::LimitsConfig;
use crate::domain::{TenantCtx, TenantId};
use crate::error::{InternalError, Result, UserError};
use crate::limits::{Class, Limits, RateLimiter, TenantLimits};
use crate::metrics::{Gauges, Metrics};
use crate::storage::catalog::Catalog;
use crate::usage::{Meter, Metric};

/// Counters of one UTC day.
#[derive(Debug, Clone, Default)]
pub struct DayUsage {
    pub day: String,
    pub counters: std::collections::BTreeMap<String, u64>,
}

/// What a tenant used by day, and what it stores now.
#[derive(Debug, Clone, Default)]
pub struct UsageReport {
    pub days: Vec<DayUsage>,
    pub documents: u64,
    pub bytes: u64,
    pub chunks: u64,
}

pub struct Governor {
    catalog: Arc<dyn Catalog>,
    config: LimitsConfig,
    limiter: RateLimiter,
    pub(crate) meter: Arc<Meter>,
    pub(crate) metrics: Metrics,
}

impl Governor {
    pub fn new(
        catalog: Arc<dyn Catalog>,
        config: LimitsConfig,
        meter: Arc<Meter>,
        metrics: Metrics,
    ) -> Self {
        Self {
            catalog,
            config,
            limiter: RateLimiter::default(),
            meter,
            metrics,
        }
    }

    /// The tenant's limits in force, if known without a catalog read.
    pub fn cached_limits(&self, tenant: &TenantId) -> Option<Limits> {
        self.limiter.cached(tenant)
    }

    /// The tenant's limits in force (configured defaults under its overrides). Blocking.
    pub fn load_limits(&self, tenant: &TenantId) -> Result<Limits> {
        let over = self.overrides(tenant)?;
        let l = Limits::resolve(&self.config, &over);
        self.limiter.remember(tenant, l);
        Ok(l)
    }

    fn overrides(&self, tenant: &TenantId) -> Result<TenantLimits> {
        Ok(match self.catalog.tenant_limits(tenant)? {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| InternalError::Other(format!("stored limits: {e}")))?,
            None => TenantLimits::default(),
        })
    }

    /// (overrides, limits in force) of a tenant. Blocking.
    pub fn tenant_limits(&self, tenant: &TenantId) -> Result<(TenantLimits, Limits)> {
        if !self.catalog.tenant_exists(tenant)? {
            return Err(UserError::NotFound("tenant").into());
        }
        let over = self.overrides(tenant)?;
        Ok((over.clone(), Limits::resolve(&self.config, &over)))
    }

    /// Replace a tenant's overrides. Blocking.
    pub fn put_tenant_limits(&self, tenant: &TenantId, over: &TenantLimits) -> Result<Limits> {
        over.validate().map_err(UserError::Invalid)?;
        if !self.catalog.tenant_exists(tenant)? {
            return Err(UserError::NotFound("tenant").into());
        }
        let json = serde_json::to_string(over).map_err(|e| InternalError::Other(e.to_string()))?;
        self.catalog.put_tenant_limits(tenant, &json)?;
        self.limiter.forget(tenant);
        self.load_limits(tenant)
    }

    /// Take a token from the tenant's bucket for `class`, or refuse with when to retry.
    pub fn admit(&self, ctx: &TenantCtx, class: Class, limits: &Limits) -> Result<()> {
        self.limiter
            .take(ctx.tenant(), class, limits)
            .map_err(|retry_after_secs| UserError::RateLimited { retry_after_secs }.into())
    }

    /// Usage by day (`from..=to`, `YYYY-MM-DD`) and what the tenant stores now. Blocking.
    pub fn usage(&self, tenant: &TenantId, from: &str, to: &str) -> Result<UsageReport> {
        if !self.catalog.tenant_exists(tenant)? {
            return Err(UserError::NotFound("tenant").into());
        }
        self.flush_usage();
        let mut report = UsageReport::default();
        for (day, metric, value) in self.catalog.usage(tenant, from, to)? {
            if report.days.last().is_none_or(|d| d.day != day) {
                report.days.push(DayUsage {
                    day: day.clone(),
                    ..Default::default()
                });
            }
            if let Some(d) = report.days.last_mut() {
                d.counters.insert(metric, value);
            }
        }
        (report.documents, report.bytes, report.chunks) = self.catalog.stored_totals(tenant)?;
        Ok(report)
    }

    /// Write the meter's counters to the catalog; kept for the next try if that fails.
    pub fn flush_usage(&self) {
        let rows = self.meter.take();
        if let Err(e) = self.catalog.add_usage(&rows) {
            tracing::warn!(error = %e, "usage counters not written; will retry");
            self.meter.restore(rows);
        }
    }

    /// Count an API error against the tenant (by stable code; never a message).
    pub fn meter_error(&self, tenant: &TenantId, code: &'static str) {
        self.meter.add(tenant, Metric::Error(code), 1);
    }

    pub fn observe_request(
        &self,
        route: &str,
        method: &str,
        status: u16,
        tenant: Option<&TenantId>,
        elapsed: Duration,
    ) {
        self.metrics.request(route, method, status, tenant, elapsed);
    }

    pub fn render_metrics(&self, gauges: &Gauges) -> String {
        self.metrics.render(gauges)
    }

    /// How many nodes share the rate limits (from the heartbeat).
    pub fn set_nodes(&self, n: usize) {
        self.limiter.set_nodes(n);
        self.metrics.set_nodes(n);
    }

    /// A deleted tenant leaves no bucket, counter or metric label behind.
    pub fn forget(&self, tenant: &TenantId) {
        self.limiter.forget(tenant);
        self.meter.forget(tenant);
        self.metrics.forget_tenant(tenant);
    }
}
