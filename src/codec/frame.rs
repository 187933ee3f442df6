//! Fixed header and Remaining Length: the frame check that runs before a body is buffered.
//!
//! Contract: [`check_frame`] looks at no more than the first five bytes, never allocates and
//! never panics. It answers "incomplete" (`Ok(None)`) only while the Remaining Length is still
//! arriving; as soon as the length is known it enforces the 4-byte limit on the Remaining
//! Length (MQTT 5.0 §1.5.5, 3.1.1 §2.2.3) and the caller's maximum packet size, so a peer
//! that announces a huge packet is refused before a single body byte is buffered — this holds
//! for CONNECT too, whose size limit is the server's own. Packet type and flag rules are
//! checked by [`fn@super::decode::decode`], which also sees the protocol version and role.

use super::error::DecodeError;

/// The control packet types (upper nibble of the first byte, MQTT 5.0 §2.1.2). Type 0 is
/// reserved and has no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    Connect = 1,
    Connack = 2,
    Publish = 3,
    Puback = 4,
    Pubrec = 5,
    Pubrel = 6,
    Pubcomp = 7,
    Subscribe = 8,
    Suback = 9,
    Unsubscribe = 10,
    Unsuback = 11,
    Pingreq = 12,
    Pingresp = 13,
    Disconnect = 14,
    /// MQTT 5.0 only; whether it is allowed depends on the version (see `decode`).
    Auth = 15,
}

impl PacketType {
    /// The type for an upper nibble; `None` for the reserved type 0 (and anything > 15).
    pub fn from_nibble(nibble: u8) -> Option<PacketType> {
        Some(match nibble {
            1 => PacketType::Connect,
            2 => PacketType::Connack,
            3 => PacketType::Publish,
            4 => PacketType::Puback,
            5 => PacketType::Pubrec,
            6 => PacketType::Pubrel,
            7 => PacketType::Pubcomp,
            8 => PacketType::Subscribe,
            9 => PacketType::Suback,
            10 => PacketType::Unsubscribe,
            11 => PacketType::Unsuback,
            12 => PacketType::Pingreq,
            13 => PacketType::Pingresp,
            14 => PacketType::Disconnect,
            15 => PacketType::Auth,
            _ => return None,
        })
    }

    /// The upper nibble value.
    pub fn nibble(self) -> u8 {
        self as u8
    }
}

/// What the fixed header says, known before the body is buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Upper nibble of byte 1.
    pub packet_type: u8,
    /// Lower nibble of byte 1.
    pub flags: u8,
    /// Bytes of fixed header (1 + 1..=4).
    pub header_len: usize,
    /// Remaining Length.
    pub remaining_len: usize,
}

impl FrameHeader {
    pub fn total_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Reads the fixed header at the front of `buf` and checks the whole size against
/// `max_packet_size` before any body byte is needed. `Ok(None)`: header incomplete.
///
/// Errors: `MalformedRemainingLength` when the fourth length byte still has its continuation
/// bit set (reported without waiting for a fifth byte); `PacketTooLarge` when fixed header
/// plus Remaining Length exceed `max_packet_size`. Non-minimal length encodings are accepted
/// (see [`super::reader::Reader::varint`]).
pub fn check_frame(buf: &[u8], max_packet_size: u32) -> Result<Option<FrameHeader>, DecodeError> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let mut remaining_len: usize = 0;
    for (i, &byte) in rest.iter().take(4).enumerate() {
        remaining_len |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            let header = FrameHeader {
                packet_type: first >> 4,
                flags: first & 0x0F,
                header_len: 2 + i,
                remaining_len,
            };
            let size = header.total_len() as u64;
            if size > u64::from(max_packet_size) {
                return Err(DecodeError::PacketTooLarge { size, max: max_packet_size });
            }
            return Ok(Some(header));
        }
    }
    if rest.len() >= 4 {
        // Four bytes, all with the continuation bit: a fifth would be needed (MQTT-1.5.5).
        return Err(DecodeError::MalformedRemainingLength);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_LIMIT: u32 = u32::MAX;

    fn header(packet_type: u8, flags: u8, header_len: usize, remaining_len: usize) -> FrameHeader {
        FrameHeader { packet_type, flags, header_len, remaining_len }
    }

    #[test]
    fn packet_type_nibbles() {
        assert_eq!(PacketType::from_nibble(0), None);
        assert_eq!(PacketType::from_nibble(16), None);
        for nibble in 1..=15 {
            let packet_type = PacketType::from_nibble(nibble).expect("types 1..=15 exist");
            assert_eq!(packet_type.nibble(), nibble);
        }
    }

    #[test]
    fn empty_and_partial_headers_are_incomplete() {
        assert_eq!(check_frame(&[], NO_LIMIT), Ok(None));
        assert_eq!(check_frame(&[0x30], NO_LIMIT), Ok(None)); // type byte only
        assert_eq!(check_frame(&[0x30, 0x80], NO_LIMIT), Ok(None)); // length continues
        assert_eq!(check_frame(&[0x30, 0x80, 0x80], NO_LIMIT), Ok(None));
        assert_eq!(check_frame(&[0x30, 0x80, 0x80, 0x80], NO_LIMIT), Ok(None));
    }

    #[test]
    fn lengths_of_one_to_four_bytes() {
        // PINGREQ: type 12, flags 0, length 0.
        assert_eq!(check_frame(&[0xC0, 0x00], NO_LIMIT), Ok(Some(header(12, 0, 2, 0))));
        // PUBLISH QoS 1 retain: flags 0b0011, length 127; body bytes need not be present.
        assert_eq!(check_frame(&[0x33, 0x7F], NO_LIMIT), Ok(Some(header(3, 3, 2, 127))));
        // Length 128 = 0x80 0x01.
        assert_eq!(check_frame(&[0x30, 0x80, 0x01], NO_LIMIT), Ok(Some(header(3, 0, 3, 128))));
        // Length 16,384 = 0x80 0x80 0x01.
        assert_eq!(
            check_frame(&[0x30, 0x80, 0x80, 0x01], NO_LIMIT),
            Ok(Some(header(3, 0, 4, 16_384)))
        );
        // Length 268,435,455 = 0xFF 0xFF 0xFF 0x7F, the maximum.
        assert_eq!(
            check_frame(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], NO_LIMIT),
            Ok(Some(header(3, 0, 5, 268_435_455)))
        );
    }

    #[test]
    fn five_byte_remaining_length_is_malformed() {
        // Four continuation bytes: rejected before the fifth arrives ...
        assert_eq!(
            check_frame(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF], NO_LIMIT),
            Err(DecodeError::MalformedRemainingLength)
        );
        // ... and also when it is there.
        assert_eq!(
            check_frame(&[0x30, 0x80, 0x80, 0x80, 0x80, 0x01], NO_LIMIT),
            Err(DecodeError::MalformedRemainingLength)
        );
    }

    #[test]
    fn max_packet_size_counts_the_fixed_header() {
        // 2 header bytes + 98 body bytes = 100: exactly at the limit.
        assert_eq!(check_frame(&[0x30, 98], 100), Ok(Some(header(3, 0, 2, 98))));
        // 2 + 99 = 101: one over.
        assert_eq!(
            check_frame(&[0x30, 99], 100),
            Err(DecodeError::PacketTooLarge { size: 101, max: 100 })
        );
    }

    #[test]
    fn huge_connect_is_rejected_from_the_header_alone() {
        // CONNECT announcing 268,435,455 body bytes; no body byte present.
        assert_eq!(
            check_frame(&[0x10, 0xFF, 0xFF, 0xFF, 0x7F], 1024),
            Err(DecodeError::PacketTooLarge { size: 268_435_460, max: 1024 })
        );
    }
}
