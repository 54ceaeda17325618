//! Prometheus metrics, rendered by hand in the text exposition format. Labels never carry ids
//! other than the tenant (routes are templates such as `/v1/documents/{id}`), and the number of
//! distinct tenant labels is capped.
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::MetricsConfig;
use crate::domain::TenantId;

const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{braced} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braced} {}", self.count);
    }
}

/// Fine latency buckets for the recent history: each bound 20% above the last, from 0.25 ms
/// to about 72 s, so a quantile read from them is within 20% of the true one (a quantile past
/// 72 s reads as 72 s).
const FINE_BUCKETS: usize = 70;
const FINE_FIRST_SECS: f64 = 0.000_25;
const FINE_GROWTH: f64 = 1.2;

fn fine_bound(i: usize) -> f64 {
    FINE_FIRST_SECS * FINE_GROWTH.powi(i as i32)
}

fn fine_bucket(secs: f64) -> usize {
    if secs <= FINE_FIRST_SECS {
        return 0;
    }
    let i = ((secs / FINE_FIRST_SECS).ln() / FINE_GROWTH.ln()).ceil() as usize;
    i.min(FINE_BUCKETS - 1)
}

/// One tenant's requests in one minute.
#[derive(Clone)]
struct MinuteSlot {
    requests: u64,
    client_errors: u64,
    throttled: u64,
    server_errors: u64,
    queries: u64,
    query_latency: [u32; FINE_BUCKETS],
}

impl Default for MinuteSlot {
    fn default() -> Self {
        Self {
            requests: 0,
            client_errors: 0,
            throttled: 0,
            server_errors: 0,
            queries: 0,
            query_latency: [0; FINE_BUCKETS],
        }
    }
}

impl MinuteSlot {
    /// The upper bound of the bucket holding the q-th quantile (so never an underestimate).
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.queries == 0 {
            return None;
        }
        let rank = ((q * self.queries as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, n) in self.query_latency.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= rank {
                return Some(fine_bound(i) * 1000.0);
            }
        }
        Some(fine_bound(FINE_BUCKETS - 1) * 1000.0)
    }
}

/// One tenant's minute, as the operator's history shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteStats {
    /// Unix seconds at the start of the minute.
    pub minute: u64,
    pub requests: u64,
    /// 4xx answers other than 429.
    pub client_errors: u64,
    /// 429: the tenant's rate limit or queue refused it; it may be retried.
    pub throttled: u64,
    /// 5xx answers (503 included: draining, load shedding, storage not answering).
    pub server_errors: u64,
    /// `POST /v1/query` requests, and their latency quantiles (ms, bucket upper bounds).
    pub queries: u64,
    pub query_p50_ms: Option<f64>,
    pub query_p95_ms: Option<f64>,
    pub query_p99_ms: Option<f64>,
}

/// How far back the per-tenant history goes, in one-minute slots.
pub const HISTORY_MINUTES: u64 = 180;

#[derive(Default)]
struct State {
    requests: BTreeMap<(String, String, u16, String), u64>,
    latency: BTreeMap<(String, String, String), Histogram>,
    jobs: BTreeMap<&'static str, u64>,
    embed_batch: Histogram,
    tenants: HashSet<TenantId>,
    /// Per minute (Unix seconds at its start), per tenant label: the last
    /// `HISTORY_MINUTES`, oldest first.
    recent: VecDeque<(u64, BTreeMap<String, MinuteSlot>)>,
}

/// Gauges read at render time.
pub struct Gauges<'a> {
    /// This node's id: every series of /metrics is this node's alone.
    pub node: &'a str,
    /// Queued and running jobs of the whole deployment.
    pub queue_depth: usize,
    /// Jobs running on this node.
    pub running_jobs: usize,
    pub open_tenants: usize,
    pub open_vector_shards: usize,
    pub draining: bool,
}

pub struct Metrics {
    per_tenant: bool,
    max_tenant_labels: usize,
    state: Mutex<State>,
    nodes: std::sync::atomic::AtomicUsize,
}

impl Metrics {
    pub fn new(c: &MetricsConfig) -> Self {
        Self {
            per_tenant: c.per_tenant,
            max_tenant_labels: c.max_tenant_labels,
            state: Mutex::new(State::default()),
            nodes: std::sync::atomic::AtomicUsize::new(1),
        }
    }

    pub fn set_nodes(&self, n: usize) {
        self.nodes.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn tenant_label(&self, st: &mut State, tenant: Option<&TenantId>) -> String {
        match tenant {
            None => String::new(),
            Some(_) if !self.per_tenant => String::new(),
            Some(t) if st.tenants.contains(t) => t.to_string(),
            Some(t) if st.tenants.len() < self.max_tenant_labels => {
                st.tenants.insert(t.clone());
                t.to_string()
            }
            Some(_) => "_other".into(),
        }
    }

    pub fn request(
        &self,
        route: &str,
        method: &str,
        status: u16,
        tenant: Option<&TenantId>,
        elapsed: Duration,
    ) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let attributed = tenant.is_some();
        let tenant = self.tenant_label(&mut st, tenant);
        if attributed {
            let slot = minute_slot(&mut st.recent, unix_minute(), &tenant);
            slot.requests += 1;
            match status {
                429 => slot.throttled += 1,
                400..=499 => slot.client_errors += 1,
                500..=599 => slot.server_errors += 1,
                _ => {}
            }
            if route == "/v1/query" && method == "POST" && status < 400 {
                slot.queries += 1;
                slot.query_latency[fine_bucket(elapsed.as_secs_f64())] += 1;
            }
        }
        *st.requests
            .entry((route.into(), method.into(), status, tenant.clone()))
            .or_default() += 1;
        st.latency
            .entry((route.into(), method.into(), tenant))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// An ingestion job ended: `succeeded`, `unchanged`, `failed`, `superseded`, `quota_exceeded`.
    pub fn job(&self, outcome: &'static str) {
        *self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .jobs
            .entry(outcome)
            .or_default() += 1;
    }

    pub fn embed_batch(&self, elapsed: Duration) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .embed_batch
            .observe(elapsed.as_secs_f64());
    }

    pub fn forget_tenant(&self, tenant: &TenantId) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.tenants.remove(tenant) {
            let t = tenant.as_str();
            st.requests.retain(|k, _| k.3 != t);
            st.latency.retain(|k, _| k.2 != t);
            for (_, tenants) in st.recent.iter_mut() {
                tenants.remove(t);
            }
        }
    }

    /// Each tenant label's last `minutes` (at most `HISTORY_MINUTES`) on this node, minutes
    /// without requests left out. The label is the tenant id, `_other` past the label cap, or
    /// empty when per-tenant metrics are off.
    pub fn recent(&self, minutes: u64) -> BTreeMap<String, Vec<MinuteStats>> {
        let from =
            unix_minute().saturating_sub(minutes.min(HISTORY_MINUTES).saturating_sub(1) * 60);
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: BTreeMap<String, Vec<MinuteStats>> = BTreeMap::new();
        for (minute, tenants) in st.recent.iter().filter(|(m, _)| *m >= from) {
            for (label, slot) in tenants {
                out.entry(label.clone()).or_default().push(MinuteStats {
                    minute: *minute,
                    requests: slot.requests,
                    client_errors: slot.client_errors,
                    throttled: slot.throttled,
                    server_errors: slot.server_errors,
                    queries: slot.queries,
                    query_p50_ms: slot.quantile_ms(0.50),
                    query_p95_ms: slot.quantile_ms(0.95),
                    query_p99_ms: slot.quantile_ms(0.99),
                });
            }
        }
        out
    }

    pub fn render(&self, g: &Gauges) -> String {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP tenantry_http_requests_total HTTP requests by route, method, status and tenant.\n# TYPE tenantry_http_requests_total counter\n");
        for ((route, method, status, tenant), n) in &st.requests {
            let _ = writeln!(
                out,
                "tenantry_http_requests_total{{{}}} {n}",
                labels(route, method, Some(*status), tenant)
            );
        }
        out.push_str("# HELP tenantry_http_request_duration_seconds Time to the response head.\n# TYPE tenantry_http_request_duration_seconds histogram\n");
        for ((route, method, tenant), h) in &st.latency {
            h.render(
                &mut out,
                "tenantry_http_request_duration_seconds",
                &labels(route, method, None, tenant),
            );
        }
        out.push_str("# HELP tenantry_ingest_jobs_total Ingestion jobs by outcome.\n# TYPE tenantry_ingest_jobs_total counter\n");
        for (outcome, n) in &st.jobs {
            let _ = writeln!(
                out,
                "tenantry_ingest_jobs_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP tenantry_embed_batch_seconds Ingestion embedding batch latency.\n# TYPE tenantry_embed_batch_seconds histogram\n");
        st.embed_batch
            .render(&mut out, "tenantry_embed_batch_seconds", "");
        let _ = write!(
            out,
            "# HELP tenantry_node_info The node these series come from.\n# TYPE tenantry_node_info gauge\ntenantry_node_info{{node=\"{}\"}} 1\n\
             # HELP tenantry_nodes Nodes alive in the deployment, by the heartbeat.\n# TYPE tenantry_nodes gauge\ntenantry_nodes {}\n\
             # HELP tenantry_ingest_queue_depth Jobs queued or running in the whole deployment (shared queue).\n# TYPE tenantry_ingest_queue_depth gauge\ntenantry_ingest_queue_depth {}\n\
             # HELP tenantry_ingest_running_jobs Jobs running on this node.\n# TYPE tenantry_ingest_running_jobs gauge\ntenantry_ingest_running_jobs {}\n\
             # HELP tenantry_open_tenants Tenants with an open lexical index (warm).\n# TYPE tenantry_open_tenants gauge\ntenantry_open_tenants {}\n\
             # HELP tenantry_open_vector_shards Tenants with an open vector shard (warm).\n# TYPE tenantry_open_vector_shards gauge\ntenantry_open_vector_shards {}\n\
             # HELP tenantry_draining 1 while shutting down.\n# TYPE tenantry_draining gauge\ntenantry_draining {}\n",
            escape(g.node),
            self.nodes.load(std::sync::atomic::Ordering::Relaxed),
            g.queue_depth,
            g.running_jobs,
            g.open_tenants,
            g.open_vector_shards,
            u8::from(g.draining)
        );
        out
    }
}

fn unix_minute() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    secs - secs % 60
}

/// The label's slot for `minute`, dropping minutes older than the history.
fn minute_slot<'a>(
    recent: &'a mut VecDeque<(u64, BTreeMap<String, MinuteSlot>)>,
    minute: u64,
    label: &str,
) -> &'a mut MinuteSlot {
    if recent.back().is_none_or(|(m, _)| *m < minute) {
        recent.push_back((minute, BTreeMap::new()));
    }
    let horizon = minute.saturating_sub((HISTORY_MINUTES - 1) * 60);
    while recent.front().is_some_and(|(m, _)| *m < horizon) {
        recent.pop_front();
    }
    // A clock step backwards lands in the newest minute rather than reordering history.
    let (_, tenants) = recent.back_mut().expect("pushed above");
    tenants.entry(label.to_string()).or_default()
}

fn labels(route: &str, method: &str, status: Option<u16>, tenant: &str) -> String {
    let mut s = format!("route=\"{}\",method=\"{}\"", escape(route), escape(method));
    if let Some(st) = status {
        let _ = write!(s, ",status=\"{st}\"");
    }
    if !tenant.is_empty() {
        let _ = write!(s, ",tenant=\"{tenant}\"");
    }
    s
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_labels_are_capped() {
        let m = Metrics::new(&MetricsConfig {
            per_tenant: true,
            max_tenant_labels: 1,
        });
        for t in ["a", "b", "c"] {
            let t = TenantId::parse(t).unwrap();
            m.request("/v1/query", "POST", 200, Some(&t), Duration::from_millis(3));
        }
        let g = Gauges {
            node: "n1",
            queue_depth: 0,
            running_jobs: 0,
            open_tenants: 0,
            open_vector_shards: 0,
            draining: false,
        };
        let text = m.render(&g);
        assert!(text.contains("tenant=\"a\"} 1"), "{text}");
        assert!(text.contains("tenant=\"_other\"} 2"), "{text}");
        assert!(!text.contains("tenant=\"b\""));
        assert!(text.contains("le=\"0.005\",") || text.contains("le=\"0.005\"}"));
    }

    #[test]
    fn recent_history_reads_quantiles_within_a_bucket_and_forgets_tenants() {
        let m = Metrics::new(&MetricsConfig {
            per_tenant: true,
            max_tenant_labels: 10,
        });
        let a = TenantId::parse("a").unwrap();
        let b = TenantId::parse("b").unwrap();
        // 1..=100 ms: p50 is 50 ms, p95 95 ms, p99 99 ms.
        for ms in 1..=100u64 {
            m.request(
                "/v1/query",
                "POST",
                200,
                Some(&a),
                Duration::from_millis(ms),
            );
        }
        m.request("/v1/query", "POST", 429, Some(&a), Duration::from_millis(1));
        m.request("/v1/query", "POST", 503, Some(&a), Duration::from_millis(1));
        m.request(
            "/v1/documents",
            "GET",
            404,
            Some(&a),
            Duration::from_millis(1),
        );
        m.request(
            "/v1/documents",
            "GET",
            200,
            Some(&b),
            Duration::from_millis(1),
        );
        m.request("/healthz", "GET", 200, None, Duration::from_millis(1));
        let recent = m.recent(60);
        assert_eq!(
            recent.len(),
            2,
            "untenanted requests are not in the history"
        );
        let sa: u64 = recent["a"].iter().map(|x| x.requests).sum();
        assert_eq!(sa, 103);
        let last = recent["a"].last().unwrap();
        assert_eq!(last.queries, 100, "refused queries are not latency samples");
        assert_eq!(
            (last.throttled, last.server_errors, last.client_errors),
            (1, 1, 1)
        );
        for (got, want) in [
            (last.query_p50_ms, 50.0),
            (last.query_p95_ms, 95.0),
            (last.query_p99_ms, 99.0),
        ] {
            let got = got.unwrap();
            assert!(got >= want && got <= want * 1.2, "{got} for {want}");
        }
        assert_eq!(recent["b"].last().unwrap().query_p50_ms, None);
        m.forget_tenant(&a);
        assert!(!m.recent(60).contains_key("a"));
    }

    #[test]
    fn history_keeps_only_its_horizon() {
        let mut recent = VecDeque::new();
        for minute in 0..(HISTORY_MINUTES + 5) {
            minute_slot(&mut recent, minute * 60, "a").requests += 1;
        }
        assert_eq!(recent.len() as u64, HISTORY_MINUTES);
        assert_eq!(recent.front().unwrap().0, 5 * 60);
        // A clock that steps back counts in the newest minute.
        minute_slot(&mut recent, 0, "a").requests += 1;
        assert_eq!(recent.back().unwrap().1["a"].requests, 2);
    }
}
