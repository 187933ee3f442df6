//! Admission at accept: which freshly accepted sockets become connections.
//!
//! Contract: [`Admission::admit`] is asked about every accepted socket before anything is spent
//! on it (no TLS state, no buffer, no slot, no broker state); a refused socket is closed at once
//! by dropping it. Two limits, both from `[mqtt]`:
//! - `max_connections_per_address`: open connections from one IP address, CONNECTed or not;
//!   one misbehaving device or scanner cannot take the slots of the others.
//! - `max_pending_connections`: connections that have not completed CONNECT (a TLS handshake
//!   in progress included), so silent or trickling sockets, each held until
//!   `mqtt.connect_timeout`, cannot take all `max_connections` slots from clients that log in.
//!
//! Over the pending limit the *new* socket is refused; the oldest pending ones are not evicted
//! for it. Evicting would let a flood push out a real client that is in the middle of its TLS
//! handshake or CONNECT (on a slow link that takes a few round trips) in favour of the flood's
//! next socket, so under a steady flood no one would ever finish logging in; and it would turn
//! `connect_timeout` from a promise into a race. Refusing keeps every admitted socket's full
//! `connect_timeout`, costs nothing (the socket is closed before any allocation), and a client
//! refused at accept sees a closed connection and retries, as MQTT clients do. Real clients
//! are kept apart from a single flooding address by `max_connections_per_address`, set below
//! the pending limit by default (64 < 256) so one address alone never fills it.
//!
//! Counts live in a map of at most one entry per open connection's address (an address leaves
//! it with its last connection), so the map is bounded by the connection slots.
//! Also here: the rate-limited log lines of `net` that a peer can repeat at will.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use log::Level::{Info, Warn};

use crate::log_limit::{earliest_summary, LogLimiter, More};

/// Why an accepted socket was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections_per_address` connections from its address are open.
    PerAddress,
    /// `max_pending_connections` connections are waiting for their CONNECT.
    Pending,
}

#[derive(Debug)]
pub struct Admission {
    /// 0 = no limit.
    per_address_limit: usize,
    /// 0 = no limit.
    pending_limit: usize,
    /// Open connections per address; no entry with 0.
    by_address: HashMap<IpAddr, u32>,
    /// Admitted connections that have not completed CONNECT.
    pending: usize,
    pub logs: NetLogs,
}

impl Admission {
    /// `slots`: the most connections ever open at once (the map is sized for them up front
    /// when that is small).
    pub fn new(per_address_limit: usize, pending_limit: usize, slots: usize) -> Admission {
        Admission {
            per_address_limit,
            pending_limit,
            by_address: HashMap::with_capacity(slots.min(4096)),
            pending: 0,
            logs: NetLogs::default(),
        }
    }

    /// SIGHUP: new limits for the sockets accepted from now on; connections already open stay.
    pub fn set_limits(&mut self, per_address_limit: usize, pending_limit: usize) {
        self.per_address_limit = per_address_limit;
        self.pending_limit = pending_limit;
    }

    /// Admits a socket from `peer` as a pending connection, or says why not. An admitted one
    /// must later be reported by [`Admission::closed`] (and [`Admission::connected`] if it
    /// gets that far).
    pub fn admit(&mut self, peer: IpAddr) -> Result<(), Refusal> {
        let peer = peer.to_canonical();
        if self.pending_limit > 0 && self.pending >= self.pending_limit {
            return Err(Refusal::Pending);
        }
        let open = self.by_address.get(&peer).copied().unwrap_or(0);
        if self.per_address_limit > 0 && open as usize >= self.per_address_limit {
            return Err(Refusal::PerAddress);
        }
        self.by_address.insert(peer, open.saturating_add(1));
        self.pending += 1;
        Ok(())
    }

    /// An admitted connection completed CONNECT (or was refused by the broker): it no longer
    /// counts as pending.
    pub fn connected(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }

    /// An admitted connection is gone; `pending`: it never got past [`Admission::connected`].
    pub fn closed(&mut self, peer: IpAddr, pending: bool) {
        if pending {
            self.pending = self.pending.saturating_sub(1);
        }
        let peer = peer.to_canonical();
        match self.by_address.get_mut(&peer) {
            Some(open) if *open > 1 => *open -= 1,
            Some(_) => {
                self.by_address.remove(&peer);
            }
            None => {}
        }
    }

    /// Logs a refusal (rate-limited).
    pub fn log_refusal(&mut self, refusal: Refusal, peer: std::net::SocketAddr, now: Instant) {
        match refusal {
            Refusal::PerAddress => {
                if let Some(more) = self.logs.refused_per_address.allow(now) {
                    log::warn!(
                        "{peer}: connection refused, {} connections from {} open \
                         (mqtt.max_connections_per_address){}",
                        self.per_address_limit,
                        peer.ip(),
                        More(more)
                    );
                }
            }
            Refusal::Pending => {
                if let Some(more) = self.logs.refused_pending.allow(now) {
                    log::warn!(
                        "{peer}: connection refused, {} connections have not sent CONNECT yet \
                         (mqtt.max_pending_connections){}",
                        self.pending,
                        More(more)
                    );
                }
            }
        }
    }

    /// Pending connections now.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.pending
    }
}

/// The lines of `net` a peer can repeat at will, each limited on its own.
#[derive(Debug)]
pub struct NetLogs {
    pub refused_per_address: LogLimiter,
    pub refused_pending: LogLimiter,
    /// Every connection slot in use.
    pub refused_full: LogLimiter,
    /// Not TLS on a TLS port, a failed handshake, a broken record.
    pub tls_failed: LogLimiter,
    /// A bad WebSocket upgrade request or frame (`ws`/`wss` listeners).
    pub websocket_refused: LogLimiter,
    /// `accept` itself failed (EMFILE: out of file descriptors).
    pub accept_failed: LogLimiter,
}

impl Default for NetLogs {
    fn default() -> NetLogs {
        NetLogs {
            refused_per_address: LogLimiter::new(
                Warn,
                "connection refused (mqtt.max_connections_per_address)",
            ),
            refused_pending: LogLimiter::new(
                Warn,
                "connection refused (mqtt.max_pending_connections)",
            ),
            refused_full: LogLimiter::new(Warn, "connection refused (all slots in use)"),
            tls_failed: LogLimiter::new(Info, "TLS failed, connection closed"),
            websocket_refused: LogLimiter::new(Info, "WebSocket peer refused, connection closed"),
            accept_failed: LogLimiter::new(Warn, "accept failed"),
        }
    }
}

impl NetLogs {
    /// When the next "N more like this" summary is due.
    pub fn next_summary(&self) -> Option<Instant> {
        earliest_summary([
            &self.refused_per_address,
            &self.refused_pending,
            &self.refused_full,
            &self.tls_failed,
            &self.websocket_refused,
            &self.accept_failed,
        ])
    }

    /// Writes every summary due at `now`.
    pub fn write_summaries(&mut self, now: Instant) {
        for limiter in [
            &mut self.refused_per_address,
            &mut self.refused_pending,
            &mut self.refused_full,
            &mut self.tls_failed,
            &mut self.websocket_refused,
            &mut self.accept_failed,
        ] {
            limiter.write_summary(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 11));

    #[test]
    fn one_address_is_capped_and_others_still_get_in() {
        let mut admission = Admission::new(2, 0, 16);
        assert_eq!(admission.admit(A), Ok(()));
        assert_eq!(admission.admit(A), Ok(()));
        assert_eq!(admission.admit(A), Err(Refusal::PerAddress));
        assert_eq!(admission.admit(B), Ok(()));
        // Connected or not, a connection counts for its address until it closes.
        admission.connected();
        assert_eq!(admission.admit(A), Err(Refusal::PerAddress));
        admission.closed(A, false);
        assert_eq!(admission.admit(A), Ok(()));
    }

    #[test]
    fn pending_connections_are_capped_until_they_connect_or_close() {
        let mut admission = Admission::new(0, 2, 16);
        assert_eq!(admission.admit(A), Ok(()));
        assert_eq!(admission.admit(B), Ok(()));
        assert_eq!(admission.admit(B), Err(Refusal::Pending));
        assert_eq!(admission.pending(), 2);
        admission.connected();
        assert_eq!(admission.admit(B), Ok(()));
        assert_eq!(admission.admit(A), Err(Refusal::Pending));
        admission.closed(A, true);
        assert_eq!(admission.pending(), 1);
        assert_eq!(admission.admit(A), Ok(()));
    }

    #[test]
    fn zero_means_no_limit_and_the_map_forgets_closed_addresses() {
        let mut admission = Admission::new(0, 0, 16);
        for _ in 0..1000 {
            assert_eq!(admission.admit(A), Ok(()));
        }
        for _ in 0..1000 {
            admission.closed(A, true);
        }
        assert!(admission.by_address.is_empty());
        assert_eq!(admission.pending(), 0);
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_its_ipv4_address() {
        let mut admission = Admission::new(1, 0, 16);
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 168, 1, 10).to_ipv6_mapped());
        assert_eq!(admission.admit(A), Ok(()));
        assert_eq!(admission.admit(mapped), Err(Refusal::PerAddress));
        let other = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
        assert_eq!(admission.admit(other), Ok(()));
    }
}
