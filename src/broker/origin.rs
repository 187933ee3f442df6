//! Where a connection came from: the peer address, the listener that accepted it, and what that
//! listener says about its clients (anonymous access, the TLS identity as username).
//!
//! `net` builds an [`Origin`] for every accepted socket and hands it to `Broker::on_accept`;
//! a TLS connection's verified client-certificate name follows with `Broker::on_tls_identity`
//! once the handshake is done, which is always before its first byte of MQTT. The broker never
//! learns more about the transport than this.

use std::net::SocketAddr;
use std::rc::Rc;

use super::{Broker, ConnId};
use crate::codec::Connect;

/// A listener, by its index in the loop's listener list (`listener.bind` first, then the
/// `[listeners.NAME]` tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub u16);

impl ListenerId {
    /// Not a listener: a bridge's outbound link, which this broker opened.
    pub const OUTBOUND: ListenerId = ListenerId(u16::MAX);
}

/// What the broker knows about how a connection reached it.
#[derive(Debug, Clone)]
pub struct Origin {
    pub peer: SocketAddr,
    pub listener: ListenerId,
    /// The listener's `allow_anonymous`; `None` = the global `auth.allow_anonymous`.
    pub allow_anonymous: Option<bool>,
    /// The listener's `use_identity_as_username`: the certificate's CN is the username.
    pub use_identity_as_username: bool,
    /// The Common Name of the client certificate the TLS layer verified (TLS only).
    pub tls_identity: Option<Rc<str>>,
}

impl Origin {
    /// A plain TCP connection on `listener` with no per-listener settings.
    pub fn tcp(peer: SocketAddr, listener: ListenerId) -> Origin {
        Origin {
            peer,
            listener,
            allow_anonymous: None,
            use_identity_as_username: false,
            tls_identity: None,
        }
    }

    /// A bridge's outbound link to `remote` (no listener, no login: see `access.rs`).
    pub fn outbound(remote: SocketAddr) -> Origin {
        Origin::tcp(remote, ListenerId::OUTBOUND)
    }
}

/// The username a CONNECT ends up with, or why it has none it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Username {
    /// From the CONNECT (`None`: the client sent none), or the certificate's CN.
    Known(Option<Rc<str>>),
    /// `use_identity_as_username` is set and the client presented no certificate with a CN.
    MissingIdentity,
}

impl Origin {
    /// The username of `connect` on this connection: the certificate's CN when the listener
    /// says so (the CONNECT's username is ignored then, as in Mosquitto), else the CONNECT's.
    pub(super) fn username(&self, connect: &Connect) -> Username {
        if self.use_identity_as_username {
            return match &self.tls_identity {
                Some(cn) => Username::Known(Some(cn.clone())),
                None => Username::MissingIdentity,
            };
        }
        Username::Known(connect.username.as_deref().map(Rc::from))
    }
}

impl Broker {
    /// The TLS handshake of `conn` finished with a verified client certificate named `cn`.
    pub fn on_tls_identity(&mut self, conn: ConnId, cn: Rc<str>) {
        if let Some(state) = self.conn_mut(conn) {
            log::debug!("{conn:?} ({}): client certificate CN {cn:?}", state.origin.peer);
            state.origin.tls_identity = Some(cn);
        }
    }

    /// The peer address of `conn`, for log lines.
    pub(super) fn peer_of(&self, conn: ConnId) -> Option<SocketAddr> {
        self.conn(conn).map(|c| c.origin.peer)
    }
}
