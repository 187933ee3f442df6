//! Fixed header and Remaining Length (STUB).

use super::error::DecodeError;

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
pub fn check_frame(buf: &[u8], max_packet_size: u32) -> Result<Option<FrameHeader>, DecodeError> {
    let _ = (buf, max_packet_size);
    todo!("codec")
}
