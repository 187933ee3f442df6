//! Encoding packets (STUB: replaced by the codec implementation).

use super::packet::{Packet, ProtocolVersion};

/// Appends the wire form of `packet` for `version` to `out`. Fields the version does not have
/// (properties, reason codes before 5.0) are left out.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut Vec<u8>) {
    let _ = (packet, version, out);
    todo!("codec")
}

/// The exact number of bytes `encode` would append (fixed header included).
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let _ = (packet, version);
    todo!("codec")
}
