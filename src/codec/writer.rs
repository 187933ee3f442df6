//! Appending MQTT data types to a `Vec<u8>`, with matching length functions.
//!
//! Contract: every `put_*` function appends exactly the number of bytes its `*_len` twin
//! returns, so an encoder can compute a packet's Remaining Length first and then write the
//! packet in one pass into a buffer reserved once. Nothing here panics or allocates beyond
//! growing `out`.
//!
//! Values that cannot be represented are clamped so the stream stays framed: strings and
//! binary data longer than 65,535 bytes are cut to 65,535 bytes (length prefix and content
//! agree), and Variable Byte Integers above 268,435,455 are written as 268,435,455. The
//! decoder can never produce such values; only a caller building packets by hand can.

use super::reader::VARINT_MAX;

/// The largest length a Two Byte Integer length prefix can state.
pub const BINARY_MAX: usize = u16::MAX as usize;

pub fn put_u8(out: &mut Vec<u8>, value: u8) {
    out.push(value);
}

pub fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn clamp_varint(value: usize) -> u32 {
    match u32::try_from(value) {
        Ok(v) if v <= VARINT_MAX => v,
        _ => VARINT_MAX,
    }
}

/// Bytes of the Variable Byte Integer for `value` (1..=4).
pub fn varint_len(value: usize) -> usize {
    match clamp_varint(value) {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Variable Byte Integer, shortest form (MQTT-1.5.5-1).
pub fn put_varint(out: &mut Vec<u8>, value: usize) {
    let mut v = clamp_varint(value);
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn clamp_binary(bytes: &[u8]) -> &[u8] {
    bytes.get(..BINARY_MAX).unwrap_or(bytes)
}

/// Bytes of Binary Data (length prefix included).
pub fn binary_len(bytes: &[u8]) -> usize {
    2 + clamp_binary(bytes).len()
}

/// Binary Data: Two Byte Integer length, then the bytes.
pub fn put_binary(out: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = clamp_binary(bytes);
    // `clamp_binary` keeps the length within u16.
    put_u16(out, u16::try_from(bytes.len()).unwrap_or(u16::MAX));
    out.extend_from_slice(bytes);
}

/// Bytes of a UTF-8 Encoded String (length prefix included).
pub fn str_len(s: &str) -> usize {
    binary_len(s.as_bytes())
}

/// UTF-8 Encoded String: same framing as Binary Data.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_binary(out, s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::reader::Reader;

    #[test]
    fn varint_boundaries() {
        let cases: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
            (268_435_456, &[0xFF, 0xFF, 0xFF, 0x7F]), // clamped
            (usize::MAX, &[0xFF, 0xFF, 0xFF, 0x7F]),  // clamped
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, *value);
            assert_eq!(&out[..], *bytes, "{value}");
            assert_eq!(varint_len(*value), bytes.len(), "{value}");
        }
    }

    #[test]
    fn varint_round_trips_through_reader() {
        for value in [0usize, 1, 127, 128, 300, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut r = Reader::new(&out);
            assert_eq!(r.varint().map(|v| v as usize), Ok(value));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn integers_and_strings() {
        let mut out = Vec::new();
        put_u8(&mut out, 0xAB);
        put_u16(&mut out, 0x0102);
        put_u32(&mut out, 0x0304_0506);
        put_str(&mut out, "hi");
        put_binary(&mut out, &[9]);
        assert_eq!(
            out,
            [
                0xAB, // u8
                0x01, 0x02, // u16
                0x03, 0x04, 0x05, 0x06, // u32
                0x00, 0x02, b'h', b'i', // "hi"
                0x00, 0x01, 0x09, // binary [9]
            ]
        );
        assert_eq!(str_len("hi"), 4);
        assert_eq!(binary_len(&[9]), 3);
    }

    #[test]
    fn oversized_binary_is_clamped_consistently() {
        let big = vec![7u8; BINARY_MAX + 10];
        let mut out = Vec::new();
        put_binary(&mut out, &big);
        assert_eq!(out.len(), binary_len(&big));
        assert_eq!(out.len(), 2 + BINARY_MAX);
        assert_eq!(&out[..2], &[0xFF, 0xFF]);
    }
}
