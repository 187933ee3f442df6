//! Decoding whole packets from a byte buffer (STUB: replaced by the codec implementation).

use super::error::DecodeError;
use super::packet::{Packet, ProtocolVersion};

/// Which end of the connection is decoding: a server rejects packets only a server may send
/// (CONNACK, SUBACK, UNSUBACK, PINGRESP) and vice versa.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// What the decoder must know about the connection.
#[derive(Debug, Clone, Copy)]
pub struct DecodeContext {
    /// `None` until CONNECT (server) / CONNACK (client) fixed the version. A server with `None`
    /// accepts only CONNECT (else `ExpectedConnect`); with `Some`, a CONNECT is `SecondConnect`.
    pub version: Option<ProtocolVersion>,
    /// Largest whole packet (fixed header included) accepted, checked before the body is read.
    pub max_packet_size: u32,
    pub role: Role,
}

/// Decodes one packet from the front of `buf`.
///
/// `Ok(None)`: not enough bytes yet (nothing consumed). `Ok(Some((packet, n)))`: the packet
/// and the number of bytes it used. `Err`: the stream is invalid and must be closed.
pub fn decode(buf: &[u8], ctx: &DecodeContext) -> Result<Option<(Packet, usize)>, DecodeError> {
    let _ = (buf, ctx);
    todo!("codec")
}
