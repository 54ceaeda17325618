//! The ingestion queue: one FIFO per tenant, served round-robin. A tenant that queues a thousand
//! jobs delays another tenant's next job by at most one job per busy tenant, not by a thousand.
//! Bounded overall (`ingest.queue_capacity`); the per-tenant cap is the catalog's
//! `tenant_queue_max` check at submission.
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex};

use crate::domain::TenantId;

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

/// Permits for the query path's CPU-bound step (query embedding, one permit per model
/// session), granted round-robin between tenants. Without it a tenant's burst of admitted
/// queries (its rate-limit bucket refilled, a dozen clients firing at once) queues ahead of
/// another tenant's single query, which then waits for the whole burst: a p99 of several
/// embeddings instead of one. With it, that query waits for at most one turn per busy tenant.
pub struct FairPermits {
    state: Mutex<PermitState>,
    granted: Condvar,
}

#[derive(Default)]
struct PermitState {
    free: usize,
    next_ticket: u64,
    queues: HashMap<TenantId, VecDeque<u64>>,
    turn: VecDeque<TenantId>,
    granted: HashSet<u64>,
}

impl PermitState {
    /// Hand free permits to waiters in turn; true if any was granted.
    fn grant(&mut self) -> bool {
        let mut any = false;
        while self.free > 0 {
            let Some(tenant) = self.turn.pop_front() else {
                break;
            };
            let Some(q) = self.queues.get_mut(&tenant) else {
                continue;
            };
            let Some(ticket) = q.pop_front() else {
                continue;
            };
            if q.is_empty() {
                self.queues.remove(&tenant);
            } else {
                self.turn.push_back(tenant);
            }
            self.free -= 1;
            self.granted.insert(ticket);
            any = true;
        }
        any
    }
}

/// Held while the work runs; returns the permit on drop.
pub struct Permit<'a> {
    owner: &'a FairPermits,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut s = self.owner.state();
        s.free += 1;
        if s.grant() {
            drop(s);
            self.owner.granted.notify_all();
        }
    }
}

impl FairPermits {
    pub fn new(permits: usize) -> Self {
        Self {
            state: Mutex::new(PermitState {
                free: permits.max(1),
                ..PermitState::default()
            }),
            granted: Condvar::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PermitState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait (blocking the thread) for a permit in the tenant's turn.
    pub fn acquire(&self, tenant: &TenantId) -> Permit<'_> {
        let mut s = self.state();
        if s.free > 0 && s.turn.is_empty() {
            s.free -= 1;
            return Permit { owner: self };
        }
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        let q = s.queues.entry(tenant.clone()).or_default();
        q.push_back(ticket);
        if q.len() == 1 {
            s.turn.push_back(tenant.clone());
        }
        s.grant();
        loop {
            if s.granted.remove(&ticket) {
                return Permit { owner: self };
            }
            s = self.granted.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waiters queued now (tests and diagnostics).
    pub fn waiting(&self) -> usize {
        self.state().queues.values().map(VecDeque::len).sum()
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

    #[test]
    fn permits_go_round_robin_between_waiting_tenants() {
        use std::sync::Arc;
        let permits = Arc::new(FairPermits::new(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = permits.acquire(&TenantId::parse("a").unwrap());
        let mut threads = Vec::new();
        // Tenant a queues three, then b one: b must not wait behind all of a's.
        for (i, t) in ["a", "a", "a", "b"].into_iter().enumerate() {
            let (p, o) = (permits.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let _permit = p.acquire(&TenantId::parse(t).unwrap());
                o.lock().unwrap().push(format!("{t}{i}"));
            }));
            while permits.waiting() < i + 1 {
                std::thread::yield_now();
            }
        }
        drop(held);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["a0", "b3", "a1", "a2"]);
    }
}
