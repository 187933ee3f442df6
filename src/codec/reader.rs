//! A checked cursor over one packet body.
//!
//! Contract: every read is bounds-checked and returns `Err(DecodeError::Truncated)` instead of
//! indexing past the end, so no input can make a reader panic. A reader never allocates: strings
//! and binary fields are returned as borrowed slices of the input, and the caller decides
//! whether (and into what) to copy them. [`Reader::finish`] refuses trailing bytes, so a decoder
//! that ends with it has accounted for every byte of the body.
//!
//! The reader is used only after the frame layer has cut out exactly one body (Remaining
//! Length bytes), so "past the end" always means a malformed packet, never "need more bytes".

use super::error::DecodeError;

/// The largest value a Variable Byte Integer can carry (4 bytes, MQTT 5.0 §1.5.5).
pub const VARINT_MAX: u32 = 268_435_455;

/// A cursor over a byte slice; reads advance it.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { rest: buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Everything not read yet (for PUBLISH payloads, which run to the end of the packet).
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// A sub-reader over the next `n` bytes (for property blocks); this reader skips them.
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>, DecodeError> {
        self.take(n).map(Reader::new)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        match self.rest.split_first() {
            Some((&b, tail)) => {
                self.rest = tail;
                Ok(b)
            }
            None => Err(DecodeError::Truncated),
        }
    }

    /// Two Byte Integer, big-endian (MQTT 5.0 §1.5.2).
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        match b {
            [hi, lo] => Ok(u16::from_be_bytes([*hi, *lo])),
            _ => Err(DecodeError::Truncated),
        }
    }

    /// Four Byte Integer, big-endian (MQTT 5.0 §1.5.3).
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        match b {
            [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
            _ => Err(DecodeError::Truncated),
        }
    }

    /// Variable Byte Integer (MQTT 5.0 §1.5.5): at most 4 bytes, else
    /// `MalformedRemainingLength` (the variant covers every Variable Byte Integer).
    ///
    /// Non-minimal encodings (e.g. `0x80 0x00` for 0) are accepted: the value is unambiguous,
    /// and Mosquitto and most clients accept them too.
    pub fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::MalformedRemainingLength)
    }

    /// Binary Data: a Two Byte Integer length, then that many bytes (MQTT 5.0 §1.5.6).
    pub fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// UTF-8 Encoded String (MQTT 5.0 §1.5.4): valid UTF-8 (which already excludes the
    /// surrogates U+D800..U+DFFF, MQTT-1.5.4-1) and no U+0000 (MQTT-1.5.4-2).
    ///
    /// Control characters and non-characters are accepted: the specification says a receiver
    /// MAY reject them, and rejecting them would break clients that put them in payload-like
    /// strings such as user properties.
    pub fn utf8(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.binary()?;
        check_utf8(bytes)
    }

    /// Succeeds only when every byte was read.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// Checks the MQTT rules for a UTF-8 Encoded String's bytes (see [`Reader::utf8`]).
pub fn check_utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    if bytes.contains(&0) {
        return Err(DecodeError::InvalidUtf8); // MQTT-1.5.4-2
    }
    std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8) // MQTT-1.5.4-1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_big_endian() {
        let mut r = Reader::new(&[
            0x7F, // u8 127
            0x01, 0x02, // u16 0x0102
            0xDE, 0xAD, 0xBE, 0xEF, // u32 0xDEADBEEF
        ]);
        assert_eq!(r.u8(), Ok(0x7F));
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.u32(), Ok(0xDEAD_BEEF));
        assert!(r.is_empty());
        assert_eq!(r.u8(), Err(DecodeError::Truncated));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn short_integers_are_truncated_not_panics() {
        assert_eq!(Reader::new(&[0x01]).u16(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&[0x01, 0x02, 0x03]).u32(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&[]).u8(), Err(DecodeError::Truncated));
    }

    #[test]
    fn varint_examples_from_the_spec() {
        let cases: &[(&[u8], u32)] = &[
            (&[0x00], 0),
            (&[0x7F], 127),
            (&[0x80, 0x01], 128),
            (&[0xFF, 0x7F], 16_383),
            (&[0x80, 0x80, 0x01], 16_384),
            (&[0xFF, 0xFF, 0x7F], 2_097_151),
            (&[0x80, 0x80, 0x80, 0x01], 2_097_152),
            (&[0xFF, 0xFF, 0xFF, 0x7F], VARINT_MAX),
            (&[0x80, 0x00], 0), // non-minimal, accepted
        ];
        for (bytes, value) in cases {
            let mut r = Reader::new(bytes);
            assert_eq!(r.varint(), Ok(*value), "{bytes:02X?}");
            assert!(r.is_empty());
        }
    }

    #[test]
    fn varint_of_five_bytes_is_malformed() {
        let mut r = Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x01]);
        assert_eq!(r.varint(), Err(DecodeError::MalformedRemainingLength));
    }

    #[test]
    fn varint_cut_short_is_truncated() {
        let mut r = Reader::new(&[0x80, 0x80]);
        assert_eq!(r.varint(), Err(DecodeError::Truncated));
    }

    #[test]
    fn binary_and_strings() {
        let mut r = Reader::new(&[
            0x00, 0x03, 0x01, 0x02, 0x03, // binary len 3
            0x00, 0x02, b'h', b'i', // string "hi"
            0x00, 0x00, // empty string
        ]);
        assert_eq!(r.binary(), Ok(&[1u8, 2, 3][..]));
        assert_eq!(r.utf8(), Ok("hi"));
        assert_eq!(r.utf8(), Ok(""));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn length_past_the_end_is_truncated() {
        let mut r = Reader::new(&[0x00, 0x05, b'a', b'b']); // says 5, has 2
        assert_eq!(r.utf8(), Err(DecodeError::Truncated));
    }

    #[test]
    fn invalid_utf8_and_nul_are_rejected() {
        // 0xC3 0x28: invalid two-byte sequence.
        assert_eq!(Reader::new(&[0x00, 0x02, 0xC3, 0x28]).utf8(), Err(DecodeError::InvalidUtf8));
        // ED A0 80: an encoded surrogate U+D800 (MQTT-1.5.4-1).
        assert_eq!(
            Reader::new(&[0x00, 0x03, 0xED, 0xA0, 0x80]).utf8(),
            Err(DecodeError::InvalidUtf8)
        );
        // "a\0b": U+0000 (MQTT-1.5.4-2).
        assert_eq!(
            Reader::new(&[0x00, 0x03, b'a', 0x00, b'b']).utf8(),
            Err(DecodeError::InvalidUtf8)
        );
        // U+FEFF and control characters are accepted.
        assert_eq!(Reader::new(&[0x00, 0x04, 0xEF, 0xBB, 0xBF, 0x01]).utf8(), Ok("\u{FEFF}\u{1}"));
    }

    #[test]
    fn finish_refuses_trailing_bytes() {
        let mut r = Reader::new(&[0x01, 0x02]);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes));
    }

    #[test]
    fn sub_reader_and_rest() {
        let mut r = Reader::new(&[0x01, 0x02, 0x03, 0x04]);
        let mut sub = r.sub(2).expect("two bytes");
        assert_eq!(sub.u16(), Ok(0x0102));
        assert!(sub.is_empty());
        assert_eq!(r.rest(), &[0x03, 0x04]);
        assert!(r.is_empty());
        assert!(Reader::new(&[0x01]).sub(2).is_err());
    }
}
