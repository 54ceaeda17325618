//! The ingestion queue: one FIFO per tenant, served round-robin. A tenant that queues a thousand
//! jobs delays another tenant's next job by at most one job per busy tenant, not by a thousand.
//! Bounded overall (`ingest.queue_capacity`); the per-tenant cap is the catalog's
//! `tenant_queue_max` check at submission.
use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex};

use crate::tenant::TenantId;

#[derive(Default)]
struct State {
    queues: HashMap<TenantId, VecDeque<String>>,
    /// Tenants with queued jobs, in serving order.
    turn: VecDeque<TenantId>,
    len: usize,
    closed: bool,
}

pub struct FairQueue {
    capacity: usize,
    state: Mutex<State>,
    ready: Condvar,
}

impl FairQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a job; `false` if the queue is full or closed.
    pub fn push(&self, tenant: &TenantId, job: String) -> bool {
        self.push_inner(tenant, job, false)
    }

    /// Queue a job even past the capacity (jobs resumed at start, already acknowledged).
    pub fn push_unbounded(&self, tenant: &TenantId, job: String) -> bool {
        self.push_inner(tenant, job, true)
    }

    fn push_inner(&self, tenant: &TenantId, job: String, unbounded: bool) -> bool {
        let mut s = self.state();
        if s.closed || (!unbounded && s.len >= self.capacity) {
            return false;
        }
        let q = s.queues.entry(tenant.clone()).or_default();
        q.push_back(job);
        if q.len() == 1 {
            s.turn.push_back(tenant.clone());
        }
        s.len += 1;
        drop(s);
        self.ready.notify_one();
        true
    }

    /// The next job in round-robin order, waiting for one (ingestion threads block here);
    /// `None` once closed.
    pub fn pop(&self) -> Option<String> {
        let mut s = self.state();
        loop {
            if s.closed {
                return None;
            }
            if let Some(tenant) = s.turn.pop_front() {
                let q = s.queues.get_mut(&tenant)?;
                let job = q.pop_front();
                if q.is_empty() {
                    s.queues.remove(&tenant);
                } else {
                    s.turn.push_back(tenant);
                }
                s.len -= 1;
                return job;
            }
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Stop: pushes fail and waiting workers return `None` (queued jobs stay in the catalog).
    pub fn close(&self) {
        self.state().closed = true;
        self.ready.notify_all();
    }

    pub fn len(&self) -> usize {
        self.state().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget a deleted tenant's queued jobs.
    pub fn remove_tenant(&self, tenant: &TenantId) {
        let mut s = self.state();
        if let Some(q) = s.queues.remove(tenant) {
            s.len -= q.len();
            s.turn.retain(|t| t != tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_served_in_turn_not_in_arrival_order() {
        let q = FairQueue::new(100);
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        for i in 0..5 {
            assert!(q.push(&a, format!("a{i}")));
        }
        assert!(q.push(&b, "b0".into()));
        assert!(q.push(&b, "b1".into()));
        let mut order = Vec::new();
        while !q.is_empty() {
            order.push(q.pop().unwrap());
        }
        assert_eq!(order, ["a0", "b0", "a1", "b1", "a2", "a3", "a4"]);
        let small = FairQueue::new(1);
        assert!(small.push(&a, "x".into()));
        assert!(!small.push(&b, "y".into()), "bounded");
        assert_eq!(small.pop().as_deref(), Some("x"));
        small.close();
        assert_eq!(small.pop(), None);
        assert!(!small.push(&a, "z".into()), "closed");
    }
}
