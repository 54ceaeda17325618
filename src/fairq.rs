//! Round-robin between tenants for the query path's CPU-bound step. (Ingestion's turns are
//! the catalog's job queue, `Catalog::claim_job`, shared by every node.)
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex};

use crate::domain::TenantId;

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
