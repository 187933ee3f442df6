//! Reading the protocol version of a CONNECT that failed to decode, so the CONNACK that
//! reports the failure can be in the client's own version (MQTT 5.0 §4.13.1).

use super::packet::ProtocolVersion;

/// The version a CONNECT at the front of `buf` declares, if its header, protocol name and
/// level are readable. Never panics.
pub fn sniff_connect_version(buf: &[u8]) -> Option<ProtocolVersion> {
    if buf.first()? >> 4 != 1 {
        return None;
    }
    // Skip the Remaining Length (1 to 4 bytes, continuation bit 0x80).
    let mut i = 1;
    while *buf.get(i)? & 0x80 != 0 {
        i += 1;
        if i > 4 {
            return None;
        }
    }
    let body = buf.get(i + 1..)?;
    let name_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let name = body.get(2..2 + name_len)?;
    let level = *body.get(2 + name_len)?;
    match (name, level) {
        (b"MQIsdp", 3) => Some(ProtocolVersion::V31),
        (b"MQTT", 4) => Some(ProtocolVersion::V311),
        (b"MQTT", 5) => Some(ProtocolVersion::V5),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_versions_and_survives_garbage() {
        // CONNECT, remaining length 10, "MQTT", level 5, ...
        let v5 = [0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 5, 0xFF, 0, 0];
        assert_eq!(sniff_connect_version(&v5), Some(ProtocolVersion::V5));
        let v31 = [0x10, 12, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3];
        assert_eq!(sniff_connect_version(&v31), Some(ProtocolVersion::V31));
        assert_eq!(sniff_connect_version(&v5[..8]), None);
        assert_eq!(sniff_connect_version(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]), None);
        assert_eq!(sniff_connect_version(&[]), None);
        assert_eq!(sniff_connect_version(&[0x30, 2, 0, 0]), None);
    }
}
