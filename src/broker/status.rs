//! The status page's view of the sessions (`GET /api/v1/status`, `src/net/http/status.rs`):
//! the persistent sessions with the largest backlog.
//!
//! Contract: reads only what the broker already holds in memory — the session table and the
//! store's per-session usage counters (`Store::usage`, kept in step with every ring write) — so
//! answering costs no SQL. Bounded: one pass over the session table with a heap of at most
//! `limit` entries (O(n log limit), no sort of all sessions, no allocation per session); only
//! the chosen sessions' client ids are copied (an `Rc` clone each). Bridges' sessions are left
//! out: they are reported as bridges (`Metrics::bridges`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;

use super::{Broker, SessionId, BRIDGE_CLIENT_PREFIX};

/// One persistent session's backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    pub client_id: Rc<str>,
    /// Whether its client is connected now.
    pub online: bool,
    /// Messages the store holds for it: queued and sent-but-unacknowledged rows.
    pub queued: u64,
    /// Bytes of those messages as the store holds them (the encoded PUBLISH packets).
    pub bytes: u64,
}

/// The largest backlogs, and how many persistent sessions there are in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlogs {
    /// At most `limit`, largest first (by messages, then bytes, then the older session slot).
    pub top: Vec<Backlog>,
    /// Persistent sessions held (bridges excluded), connected or not.
    pub persistent: u64,
}

impl Broker {
    /// The `limit` persistent sessions with the most messages held in the store.
    pub fn top_backlogs(&self, limit: usize) -> Backlogs {
        // A min-heap of the best so far: its top is the smallest kept, replaced when a larger
        // one comes. Ties go to the lower slot, so the answer does not depend on heap order.
        let mut heap: BinaryHeap<Reverse<(u64, u64, Reverse<u32>)>> =
            BinaryHeap::with_capacity(limit.saturating_add(1).min(1024));
        let mut persistent = 0u64;
        for (slot, session) in self.sessions.iter() {
            let Some(stored) = session.stored.as_deref() else { continue };
            if session.client_id.starts_with(BRIDGE_CLIENT_PREFIX) {
                continue;
            }
            persistent += 1;
            if limit == 0 {
                continue;
            }
            let usage = self.store.usage(stored.id);
            let key = (usage.messages, usage.bytes, Reverse(slot));
            if heap.len() < limit {
                heap.push(Reverse(key));
            } else if heap.peek().is_some_and(|Reverse(smallest)| key > *smallest) {
                heap.pop();
                heap.push(Reverse(key));
            }
        }
        // Ascending `Reverse(key)` is descending `key`: largest backlog first.
        let top = heap
            .into_sorted_vec()
            .into_iter()
            .filter_map(|Reverse((queued, bytes, Reverse(slot)))| {
                let session = self.session(SessionId(slot))?;
                Some(Backlog {
                    client_id: session.client_id.clone(),
                    online: session.conn.is_some(),
                    queued,
                    bytes,
                })
            })
            .collect();
        Backlogs { top, persistent }
    }
}
