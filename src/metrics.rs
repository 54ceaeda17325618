//! Prometheus metrics, rendered by hand in the text exposition format. Labels never carry ids
//! other than the tenant (routes are templates such as `/v1/documents/{id}`), and the number of
//! distinct tenant labels is capped.
use std::collections::{BTreeMap, HashSet};
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

#[derive(Default)]
struct State {
    requests: BTreeMap<(String, String, u16, String), u64>,
    latency: BTreeMap<(String, String, String), Histogram>,
    jobs: BTreeMap<&'static str, u64>,
    embed_batch: Histogram,
    tenants: HashSet<TenantId>,
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
        let tenant = self.tenant_label(&mut st, tenant);
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
        }
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
}
