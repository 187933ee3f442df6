//! The global output budget (`mqtt.tx_buffer_total`): a bound on the unwritten output of all
//! connections together, so that a crowd of slow or hostile subscribers, each under its own
//! `mqtt.tx_buffer_limit`, cannot take the device's memory together (issue 16: 1,000
//! subscribers reading slower than a QoS 0 publisher held 250 MB).
//!
//! Contract: `net` keeps the running total ([`OutputTotal`]: bytes, and how many connections
//! hold any) where output buffers grow and shrink, and reports it through
//! [`super::Outbox::output_total`]; this file says what the total means for one connection.
//! The rule: while the total is at or over the budget, a connection holding more than its *fair
//! share* (the budget divided by the connections holding output) is full, exactly as if it were
//! over its own `tx_buffer_limit`: a QoS 0 delivery to it pauses the publisher (back-pressure,
//! for `mqtt.max_pause` at most: `backpressure.rs`) or, where nobody can be paused (the
//! subscriber is slow, or there is no publisher: a retained replay, a will), is dropped and
//! counted. A subscriber that reads its socket is never dropped for the budget: it drains at
//! the end of each loop pass, so the publisher it paused is resumed at once; a crowd that does
//! not read turns slow after `max_pause` and its overflow is dropped, each member holding about
//! its share (plus the one message that crossed it).
//!
//! QoS 1/2 deliveries are never dropped for it: they wait in their window and queue as before.
//! They, and the answers to a client's own packets, count in the total, so past twice the
//! budget `net` also stops reading a connection over its share (as over its own limit): a
//! crowd of publishers that never read their PUBACKs is held to the budget too.
//!
//! A connection at or under its share always gets its message: when the total is over the
//! budget, some connection is over its share (the shares add up to the budget).
//!
//! Cost: on the QoS 0 path a few comparisons and one division; nothing is walked and nothing
//! arms a timer, so an idle broker still never wakes up.

use super::backpressure::OUTPUT_HARD_FACTOR;

/// The unwritten output of every connection together, kept by `net`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutputTotal {
    /// Bytes queued for connections and not yet written to their sockets.
    pub bytes: usize,
    /// Connections with at least one such byte.
    pub holders: usize,
}

impl OutputTotal {
    /// Accounts one connection's backlog going from `before` to `after` bytes (a connection
    /// that goes away goes to 0).
    pub fn update(&mut self, before: usize, after: usize) {
        self.bytes = self.bytes.saturating_add(after).saturating_sub(before);
        match (before > 0, after > 0) {
            (false, true) => self.holders += 1,
            (true, false) => self.holders = self.holders.saturating_sub(1),
            (false, false) | (true, true) => {}
        }
    }

    /// A connection's fair share of `budget`.
    fn share(&self, budget: usize) -> usize {
        budget / self.holders.max(1)
    }
}

/// How the budget sees one connection's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Under its share, or the total is under the budget (or there is no budget).
    Room,
    /// Over its share while the total is at or over the budget: full, as over
    /// `tx_buffer_limit` (QoS 0 publishers to it are paused, or the message is dropped).
    Full,
    /// Over its share while the total is at or over twice the budget: also not read (`net`).
    HardFull,
}

/// What `budget` (0: none) says of a connection holding `backlog` of `total`.
pub fn judge(budget: usize, total: OutputTotal, backlog: usize) -> Budget {
    if budget == 0 || total.bytes < budget || backlog <= total.share(budget) {
        Budget::Room
    } else if total.bytes < budget.saturating_mul(OUTPUT_HARD_FACTOR) {
        Budget::Full
    } else {
        Budget::HardFull
    }
}

/// Whether a connection that was full by the budget is still congested: the total over half
/// the budget and its backlog over half its share (the same hysteresis as the per-connection
/// limit's, so a slow connection does not flip between full and clear each loop pass).
pub fn still_full(budget: usize, total: OutputTotal, backlog: usize) -> bool {
    budget > 0 && total.bytes > budget / 2 && backlog > total.share(budget) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_keeps_bytes_and_holders() {
        let mut t = OutputTotal::default();
        t.update(0, 100); // a connection gets output
        t.update(0, 50); // another one
        t.update(100, 160); // the first gets more
        assert_eq!(t, OutputTotal { bytes: 210, holders: 2 });
        t.update(160, 0); // it is written whole
        assert_eq!(t, OutputTotal { bytes: 50, holders: 1 });
        t.update(50, 20); // partly written
        t.update(20, 0); // the connection goes
        assert_eq!(t, OutputTotal::default());
        t.update(0, 0);
        assert_eq!(t, OutputTotal::default());
    }

    #[test]
    fn full_only_over_the_share_while_over_the_budget() {
        let budget = 1000;
        // Four holders: a share of 250 each.
        let under = OutputTotal { bytes: 999, holders: 4 };
        assert_eq!(judge(budget, under, 900), Budget::Room, "under the budget");
        let over = OutputTotal { bytes: 1000, holders: 4 };
        assert_eq!(judge(budget, over, 250), Budget::Room, "at its share");
        assert_eq!(judge(budget, over, 0), Budget::Room);
        assert_eq!(judge(budget, over, 251), Budget::Full);
        let twice = OutputTotal { bytes: 2000, holders: 4 };
        assert_eq!(judge(budget, twice, 250), Budget::Room, "a share is always kept");
        assert_eq!(judge(budget, twice, 251), Budget::HardFull);
        // No budget: never full.
        assert_eq!(judge(0, twice, 2000), Budget::Room);
        // No holder counted yet (the connection itself is about to be one).
        assert_eq!(judge(budget, OutputTotal { bytes: 1000, holders: 0 }, 1001), Budget::Full);
    }

    #[test]
    fn stays_full_down_to_half() {
        let budget = 1000;
        let total = OutputTotal { bytes: 600, holders: 2 }; // share 500
        assert!(still_full(budget, total, 251));
        assert!(!still_full(budget, total, 250), "at half its share");
        assert!(!still_full(budget, OutputTotal { bytes: 500, holders: 2 }, 400), "total at half");
        assert!(!still_full(0, total, 600), "no budget");
    }
}
